"""An upstream MCP server built on FastMCP 4.2.3 (PyPI), protected by the authorization server
in oauth_as.mjs: the MCP server of a third-party service whose users each grant access with
their own account there.

Streamable HTTP at RESOURCE's path. Every request needs a Bearer JWT from the authorization
server: signature checked against its JWKS (found through its RFC 8414 metadata), `iss` = AS_URL,
`aud` = RESOURCE, not expired. Without one the answer is 401 with
`WWW-Authenticate: Bearer resource_metadata="<origin>/.well-known/oauth-protected-resource<path>"`,
and that RFC 9728 document names AS_URL as the authorization server and offers the scope `mcp`.
The scope is not required: a token the server issued for this audience with no scope (asked for
with `resource` and only `offline_access`) is accepted too. Tools: `whoami` (the verified
token's `sub`) and `echo`.

FastMCP binds an MCP session to the token's issuer, client and subject: each user needs a
session of their own.

Environment: PORT (binds 127.0.0.1), AS_URL (the issuer, which must be up when this starts),
RESOURCE (http://127.0.0.1:PORT/mcp). Prints `listening <RESOURCE>` once the port accepts
connections; stops on SIGTERM.
"""

import json
import os
import socket
import urllib.request
from urllib.parse import urlsplit

from fastmcp import FastMCP
from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.auth.providers.jwt import JWTVerifier
from fastmcp.server.dependencies import get_access_token

PORT = int(os.environ["PORT"])
AS_URL = os.environ["AS_URL"]
RESOURCE = os.environ["RESOURCE"]

with urllib.request.urlopen(f"{AS_URL}/.well-known/oauth-authorization-server") as response:
    as_metadata = json.load(response)

resource = urlsplit(RESOURCE)
auth = RemoteAuthProvider(
    token_verifier=JWTVerifier(
        jwks_uri=as_metadata["jwks_uri"],
        issuer=as_metadata["issuer"],
        audience=RESOURCE,
    ),
    authorization_servers=[as_metadata["issuer"]],
    scopes_supported=["mcp"],
    base_url=f"{resource.scheme}://{resource.netloc}",
)
mcp = FastMCP("upstream", auth=auth)


@mcp.tool
def whoami() -> str:
    """The subject (user) of the access token this request carries."""
    return get_access_token().subject


@mcp.tool
def echo(text: str) -> str:
    """Returns the text given."""
    return text


# Bound here, before FastMCP starts, so that `listening` is printed only once connections are
# accepted; they wait in the backlog until the server takes them.
sock = socket.create_server(("127.0.0.1", PORT))
print(f"listening {RESOURCE}", flush=True)
mcp.run(
    transport="http",
    host="127.0.0.1",
    port=PORT,
    path=resource.path,
    sockets=[sock],
    show_banner=False,
)
