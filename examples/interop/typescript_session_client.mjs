// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/client 2.4.0), in
// legacy (session) mode, with a delegation token: it initializes, lists the tools, makes
// MCP_CALLS calls of one tool, waits for its GET stream to open, and ends the session with
// DELETE. Every HTTP request it makes is recorded (method, session id sent, status), so the
// Rust test can tell that each worked whichever gateway replica a load balancer sent it to.
// Prints one JSON line.
//
// Environment: MCP_URL, MCP_TOKEN, MCP_CLIENT_MODULE (the absolute path of the SDK's ESM entry
// point), MCP_CALLS (default 1), MCP_ALLOWED_TOOL (default list_expenses).
import { pathToFileURL } from 'node:url';

const { Client, StreamableHTTPClientTransport } = await import(
  pathToFileURL(process.env.MCP_CLIENT_MODULE).href
);
const seen = { requests: [], calls: [] };
const recording = async (url, init) => {
  const response = await fetch(url, init);
  const headers = new Headers(init?.headers);
  seen.requests.push({
    method: init?.method ?? 'GET',
    session: headers.get('mcp-session-id'),
    status: response.status,
  });
  return response;
};
const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_TOKEN}` } },
  fetch: recording,
});
const client = new Client(
  { name: 'typescript-sdk-session', version: '0.0.1' },
  { capabilities: {}, versionNegotiation: { mode: 'legacy' } },
);
await client.connect(transport);
seen.tools = (await client.listTools()).tools.map((tool) => tool.name).sort();
for (let i = 0; i < Number(process.env.MCP_CALLS ?? '1'); i += 1) {
  try {
    const result = await client.callTool({
      name: process.env.MCP_ALLOWED_TOOL ?? 'list_expenses',
      arguments: {},
    });
    seen.calls.push(result.isError ? 'error' : 'ok');
  } catch (error) {
    seen.calls.push(`${error.code} ${error.data?.reason}`);
  }
}
for (let i = 0; i < 100 && !seen.requests.some((r) => r.method === 'GET'); i += 1) {
  await new Promise((resolve) => setTimeout(resolve, 50));
}
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(seen));
