"""An MCP client built on the official Python SDK (mcp 2.3.0), run against the gateway.

It connects with no credentials, lets the SDK's OAuth support take it from the gateway's 401
through protected-resource metadata to the issuer's metadata, registers itself (RFC 7591),
and runs the authorization-code flow with PKCE. A person would sign in and approve in a
browser; `approve` plays that person on the issuer's pages. Then it lists and calls tools
through the gateway. It prints one JSON line of what it saw, which the Rust test checks.

Environment: MCP_URL (the gateway's endpoint), MCP_USERNAME, MCP_PASSWORD, MCP_MODE
(legacy, auto or 2026-07-28), and what to call: MCP_ALLOWED_TOOL with MCP_ALLOWED_ARGS (JSON),
MCP_HIDDEN_TOOL (defaults: the expenses server's list_expenses and delete_all_expenses).

Incremental consent: with MCP_FIRST_TICK (comma-separated tool patterns) the person ticks only
those at the first consent; MCP_STEP_UP_TOOL (with MCP_STEP_UP_ARGS) is then called last, which
a gateway with incremental_consent answers 403 insufficient_scope: the SDK sends the person back
through consent for the scope it names and retries. Every authorization's `scope` is reported.
"""
import asyncio
import json
import os
import re
import sys
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

import httpx2
from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

URL = os.environ["MCP_URL"]
USERNAME = os.environ["MCP_USERNAME"]
PASSWORD = os.environ["MCP_PASSWORD"]
MODE = os.environ.get("MCP_MODE", "legacy")
ALLOWED_TOOL = os.environ.get("MCP_ALLOWED_TOOL", "list_expenses")
ALLOWED_ARGS = json.loads(os.environ.get("MCP_ALLOWED_ARGS", "{}"))
HIDDEN_TOOL = os.environ.get("MCP_HIDDEN_TOOL", "delete_all_expenses")  # "" = none
FIRST_TICK = [t for t in os.environ.get("MCP_FIRST_TICK", "").split(",") if t]
STEP_UP_TOOL = os.environ.get("MCP_STEP_UP_TOOL")
STEP_UP_ARGS = json.loads(os.environ.get("MCP_STEP_UP_ARGS", "{}"))


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


def field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    if not match:
        raise RuntimeError(f"no {name} field in: {page[:500]}")
    return match.group(1)


async def approve(browser: httpx2.AsyncClient, authorization_url: str, only: list[str]) -> str:
    """Signs in and approves every tool on offer (or only those in `only`); returns the
    redirect back to the client."""
    page = await browser.get(authorization_url)
    page.raise_for_status()
    request, csrf = field(page.text, "request"), field(page.text, "csrf")
    base = f"{urlparse(authorization_url).scheme}://{urlparse(authorization_url).netloc}"
    consent = await browser.post(
        urljoin(base, "/authorize/sign-in"),
        data={"request": request, "csrf": csrf, "username": USERNAME, "password": PASSWORD},
    )
    consent.raise_for_status()
    tools = re.findall(r'name="tool" value="([^"]*)"', consent.text)
    if only:
        tools = [tool for tool in tools if tool in only]
    # Repeated `tool` fields: encoded by hand (httpx2 takes a list of pairs as a sync stream).
    form = [("request", request), ("csrf", csrf), ("decision", "approve")]
    form += [("tool", tool) for tool in tools]
    answer = await browser.post(
        urljoin(base, "/authorize/consent"),
        content=urlencode(form),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    if answer.status_code not in (302, 303):
        raise RuntimeError(f"consent answered {answer.status_code}: {answer.text[:500]}")
    return answer.headers["location"]


async def main() -> None:
    seen: dict = {"authorization_urls": 0, "scopes": []}
    redirected: dict[str, str] = {}
    async with httpx2.AsyncClient() as browser:

        async def redirect_handler(authorization_url: str) -> None:
            seen["authorization_urls"] += 1
            query = parse_qs(urlparse(authorization_url).query)
            seen["pkce_method"] = query.get("code_challenge_method", [None])[0]
            seen["resource"] = query.get("resource", [None])[0]
            seen["scopes"].append(query.get("scope", [None])[0])
            only = FIRST_TICK if seen["authorization_urls"] == 1 else []
            redirected["location"] = await approve(browser, authorization_url, only)

        async def callback_handler() -> AuthorizationCodeResult:
            query = parse_qs(urlparse(redirected["location"]).query)
            return AuthorizationCodeResult(
                code=query["code"][0],
                state=query.get("state", [None])[0],
                iss=query.get("iss", [None])[0],
            )

        auth = OAuthClientProvider(
            server_url=URL,
            client_metadata=OAuthClientMetadata(
                client_name="Python SDK interop client",
                redirect_uris=["http://127.0.0.1:9/callback"],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=MemoryStorage(),
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
        )
        async with create_mcp_http_client(auth=auth) as http:
            async with Client(streamable_http_client(URL, http_client=http), mode=MODE) as client:
                tools = await client.list_tools()
                seen["tools"] = sorted(tool.name for tool in tools.tools)
                result = await client.call_tool(ALLOWED_TOOL, ALLOWED_ARGS)
                seen["call_is_error"] = bool(result.is_error)
                if HIDDEN_TOOL:
                    try:
                        denied = await client.call_tool(HIDDEN_TOOL, {})
                        seen["hidden_call"] = f"answered, is_error={denied.is_error}"
                    except Exception as error:  # the gateway's JSON-RPC error −31001
                        seen["hidden_call"] = f"refused: {error}"
                if STEP_UP_TOOL:
                    stepped = await client.call_tool(STEP_UP_TOOL, STEP_UP_ARGS)
                    seen["step_up_call_is_error"] = bool(stepped.is_error)
                    again = await client.call_tool(ALLOWED_TOOL, ALLOWED_ARGS)
                    seen["allowed_after_step_up_is_error"] = bool(again.is_error)
    print(json.dumps(seen))


if __name__ == "__main__":
    if os.environ.get("MCP_DEBUG"):
        import logging

        logging.basicConfig(level=logging.DEBUG)
    try:
        asyncio.run(main())
    except Exception as error:  # report, then fail: the Rust test prints stderr
        print(f"interop client failed: {error!r}", file=sys.stderr)
        raise
