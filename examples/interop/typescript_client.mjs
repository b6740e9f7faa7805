// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/client 2.4.0), run
// against the gateway with a delegation token. It lists the tools, makes a permitted call and
// one the grant does not allow, and prints one JSON line of what it saw for the Rust test.
//
// Environment: MCP_URL, MCP_TOKEN, MCP_MODE (legacy or auto), MCP_CLIENT_MODULE (the absolute
// path of the SDK's ESM entry point: the SDK lives in .tools/, not next to this file), and what
// to call: MCP_ALLOWED_TOOL with MCP_ALLOWED_ARGS (JSON), MCP_HIDDEN_TOOL (defaults: the
// expenses server's list_expenses and delete_all_expenses).
import { pathToFileURL } from 'node:url';

const { Client, StreamableHTTPClientTransport } = await import(
  pathToFileURL(process.env.MCP_CLIENT_MODULE).href
);
const mode = process.env.MCP_MODE ?? 'legacy';
const transport = new StreamableHTTPClientTransport(new URL(process.env.MCP_URL), {
  requestInit: { headers: { Authorization: `Bearer ${process.env.MCP_TOKEN}` } },
});
const client = new Client(
  { name: 'typescript-sdk-interop', version: '0.0.1' },
  { capabilities: {}, versionNegotiation: { mode } },
);
await client.connect(transport);
const seen = { protocolVersion: client.getNegotiatedProtocolVersion() };
seen.tools = (await client.listTools()).tools.map((tool) => tool.name).sort();
const allowed = await client.callTool({
  name: process.env.MCP_ALLOWED_TOOL ?? 'list_expenses',
  arguments: JSON.parse(process.env.MCP_ALLOWED_ARGS ?? '{}'),
});
seen.callIsError = Boolean(allowed.isError);
try {
  const hidden = process.env.MCP_HIDDEN_TOOL ?? 'delete_all_expenses';
  const denied = await client.callTool({ name: hidden, arguments: {} });
  seen.hiddenCall = `answered, isError=${denied.isError}`;
} catch (error) {
  seen.hiddenCall = `refused: ${error.code} ${error.message}`;
}
await client.close();
console.log(JSON.stringify(seen));
