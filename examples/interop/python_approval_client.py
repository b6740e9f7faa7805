"""An MCP client built on the official Python SDK (mcp 2.3.0) that makes the calls it is told
to, one JSON line per call on stdin ({"tool": ..., "arguments": {...}}), in one session, and
answers each with one JSON line on stdout: {"outcome": "ok", "text": ...} or
{"outcome": "error", "code": ..., "reason": ..., "url": ...}. The Rust test in between approves
calls in a browser, so the client waits for its next line rather than following a script.

With MCP_URL_ELICITATION=1 the client declares elicitation (form and URL) at initialize, so a
call that needs a person's approval comes back as URLElicitationRequiredError (-32042); the URL
is read from its elicitations, as a client that sends its user there would.

Environment: MCP_URL, MCP_TOKEN, MCP_MODE (default legacy), MCP_URL_ELICITATION.
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
MODE = os.environ.get("MCP_MODE", "legacy")
ELICIT = os.environ.get("MCP_URL_ELICITATION") == "1"


async def elicit(context, params):
    # Only URL elicitations arrive by error here; a request on the stream would be declined.
    from mcp.types import ElicitResult

    return ElicitResult(action="decline")


def answer(line: dict) -> None:
    print(json.dumps(line), flush=True)


async def main() -> None:
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {TOKEN}"})
    options = {"elicitation_callback": elicit} if ELICIT else {}
    async with http:
        async with Client(streamable_http_client(URL, http_client=http), mode=MODE, **options) as client:
            answer({"outcome": "ready"})
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                call = json.loads(line)
                try:
                    result = await client.call_tool(call["tool"], call.get("arguments", {}))
                    text = " ".join(getattr(c, "text", "") for c in result.content)
                    answer({"outcome": "tool_error" if result.is_error else "ok", "text": text})
                except MCPError as error:
                    data = error.data or {}
                    elicitations = data.get("elicitations") or []
                    url = elicitations[0]["url"] if elicitations else data.get("approval_url")
                    answer({"outcome": "error", "code": error.code, "reason": data.get("reason"),
                            "url": url, "message": str(error)})


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as error:  # report, then fail: the Rust test prints stderr
        print(f"approval client failed: {error!r}", file=sys.stderr)
        raise
