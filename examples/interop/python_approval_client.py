"""An MCP client built on the official Python SDK (mcp 2.3.0) that makes the calls it is told
to, one JSON line per call on stdin ({"tool": ..., "arguments": {...}}), in one session, and
answers each with one JSON line on stdout: {"outcome": "ok", "text": ...} or
{"outcome": "error", "code": ..., "reason": ..., "url": ...}. The Rust test in between approves
calls in a browser, so the client waits for its next line rather than following a script.

With MCP_URL_ELICITATION=1 the client declares elicitation (form and URL). In a session
(MCP_MODE=legacy) a call that needs a person's approval then comes back as
URLElicitationRequiredError (-32042), whose URL is reported. In 2026-07-28 it comes back as an
InputRequiredResult, which the SDK hands to the elicitation callback: the callback reports
{"outcome": "elicitation", "url": ...}, waits for a line on stdin (the person has answered),
accepts, and the SDK retries the call by itself.

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
    from mcp.types import ElicitResult

    if getattr(params, "mode", None) != "url":
        return ElicitResult(action="decline")
    answer({"outcome": "elicitation", "url": params.url, "id": params.elicitation_id})
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return ElicitResult(action="accept")


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
