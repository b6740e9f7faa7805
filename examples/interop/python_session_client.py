"""An MCP client built on the official Python SDK (mcp 2.3.0), in legacy (session) mode, with a
delegation token: it initializes, lists the tools, makes MCP_CALLS calls of one tool, waits for
its GET stream to open, and ends the session with DELETE. Every HTTP request it makes is
recorded (method, session id sent, status), so the Rust test can tell that each worked
whichever gateway replica a load balancer sent it to. Prints one JSON line.

Environment: MCP_URL, MCP_TOKEN, MCP_CALLS (default 1), MCP_ALLOWED_TOOL (default
list_expenses).
"""

import asyncio
import json
import os
import sys

from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

URL = os.environ["MCP_URL"]
TOKEN = os.environ["MCP_TOKEN"]
CALLS = int(os.environ.get("MCP_CALLS", "1"))
TOOL = os.environ.get("MCP_ALLOWED_TOOL", "list_expenses")


async def main() -> None:
    seen: dict = {"requests": [], "calls": []}

    async def record(response) -> None:
        request = response.request
        seen["requests"].append(
            {
                "method": request.method,
                "session": request.headers.get("mcp-session-id"),
                "status": response.status_code,
            }
        )

    http = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
    http.event_hooks = {"response": [record]}
    async with http:
        async with Client(streamable_http_client(URL, http_client=http), mode="legacy") as client:
            seen["tools"] = sorted(tool.name for tool in (await client.list_tools()).tools)
            for _ in range(CALLS):
                try:
                    result = await client.call_tool(TOOL, {})
                    seen["calls"].append("error" if result.is_error else "ok")
                except MCPError as error:
                    reason = (error.data or {}).get("reason")
                    seen["calls"].append(f"{error.code} {reason}")
            for _ in range(100):
                if any(r["method"] == "GET" for r in seen["requests"]):
                    break
                await asyncio.sleep(0.05)
    print(json.dumps(seen))


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as error:  # report, then fail: the Rust test prints stderr
        print(f"session client failed: {error!r}", file=sys.stderr)
        raise
