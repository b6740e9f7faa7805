#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/ (committed; rerun after changing this).

Bodies from real MCP traffic (rmcp's and the SDKs' requests as examples/tests/e2e.rs and
hostile_upstream.rs send them), tokens and claims from policy/testdata/golden.json, and SSE
streams with the shapes that have bitten before (a byte-order mark, \\r\\r, multi-line data).
"""
import base64, hashlib, json, os, shutil

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))
GOLDEN = json.load(open(os.path.join(REPO, "policy/testdata/golden.json")))


def write(target, seeds):
    folder = os.path.join(ROOT, target)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for seed in seeds:
        seed = seed.encode() if isinstance(seed, str) else seed
        with open(os.path.join(folder, hashlib.sha1(seed).hexdigest()), "wb") as f:
            f.write(seed)


def b64d(part):
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def req(method, params=None, id=1):
    m = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        m["params"] = params
    return json.dumps(m)


BODIES = [
    req("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "rmcp", "version": "0.1"}}, 0),
    '{"jsonrpc":"2.0","method":"notifications/initialized"}',
    req("tools/list", {}),
    req("tools/list", {"cursor": "abc"}),
    req("tools/call", {"name": "submit_expense", "arguments": {"amount": 120, "category": "travel"}}),
    req("tools/call", {"name": "submit_expense", "arguments": {"amount": 620.5, "category": "meal"}}, "x-1"),
    req("tools/call", {"name": "list_expenses"}),
    req("tools/call", {"name": "delete_all_expenses", "arguments": {}}),
    req("resources/read", {"uri": "file:///public/a"}),
    req("resources/subscribe", {"uri": "file:///secret/a"}),
    req("prompts/get", {"name": "summary", "arguments": {"month": "may"}}),
    req("completion/complete", {"ref": {"type": "ref/prompt", "name": "secret_prompt"},
                                "argument": {"name": "a", "value": ""}}),
    req("completion/complete", {"ref": {"type": "ref/resource", "uri": "file:///secret/{name}"},
                                "argument": {"name": "name", "value": ""}}),
    req("ping"),
    '{"jsonrpc":"2.0","id":1,"result":{}}',
    '[' + req("tools/call", {"name": "a", "arguments": {"x": 1}}, 1) + ',' + req("tools/list", {}, 2) + ']',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"list_expenses","name":"delete_all_expenses"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"submit_expense","arguments":{"amount":5,"amount":5000}}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"submit_expense","arguments":{"amount":5,"\\u0061mount":5000}}}',
    '{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"secret_tool","arguments":{}}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call ","params":{"name":"secret_tool","arguments":{}}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools/call\\u0001","params":{"name":"secret_tool"}}',
    '{"jsonrpc":"2.0","id":1,"method":"tools\\/call","params":{"name":"s\\u0065cret_tool","arguments":{"a":[1,2,{"b":null}]}}}',
    '{"jsonrpc":"2.0","id":1.5,"method":"tools/call","params":{"name":"x"}}',
    '{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}',
    '\ufeff' + req("tools/list", {}),
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"n":1e400}}}',
    '{"jsonrpc":"2.0","id":18446744073709551616,"method":"tools/call","params":{"name":"x","arguments":{"n":-0}}}',
]


def tools_list(names, id=1, extra=""):
    tools = ",".join('{"name":%s,"inputSchema":{"type":"object"}}' % json.dumps(n) for n in names)
    return '{"jsonrpc":"2.0","id":%d,"result":{"tools":[%s]%s}}' % (id, tools, extra)


LIST = tools_list(["submit_expense", "secret_tool", "list_secret_x", "list_expenses"])
LISTS = [
    LIST,
    tools_list(["secret_tool"], extra=',"nextCursor":"c2","cacheScope":"public"'),
    '{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"summary"},{"name":"secret"}]}}',
    '{"jsonrpc":"2.0","id":3,"result":{"resources":[{"uri":"file:///public/a","name":"a"},{"uri":"file:///secret/b","name":"b"}]}}',
    '{"jsonrpc":"2.0","id":4,"result":{"resourceTemplates":[{"uriTemplate":"file:///secret/{x}","name":"t"}]}}',
    '[' + LIST + ',{"jsonrpc":"2.0","id":9,"result":{}}]',
    '{"jsonrpc":"2.0","id":1,"result":{"\\u0074ools":[{"name":"secret_tool"}]}}',
    '{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"secret_tool","name":"list_expenses"}]}}',
    '{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}',
]

# strict_json: bodies, claims, lists, and documents at the edges of JSON.
claims = [b64d(c["token"].split(".")[1]) for c in GOLDEN["cases"] if c["token"].count(".") == 2]
write("strict_json", BODIES + LISTS + claims + [
    '{"a":1,"a":2}', '[{"x":1},{"y":1,"y":2}]', '{"amount":1,"\\u0061mount":900}',
    '{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\\u00e9"}', '"\\ud83d\\ude00"', '"\\ud800"',
    '1e400', '-0', '18446744073709551616', '[' * 130 + ']' * 130, '{"a":1} {"a":2}', ' \t\n{}\r\n',
])

# jws_verify: golden tokens raw (mode 0), and their headers and claims signed by the target
# (mode 1 = Ed25519, 2 = P-256), some with edits (op, position, byte).
jws = []
for case in GOLDEN["cases"]:
    token = case["token"]
    jws.append(b"\x00" + token.encode())
    parts = token.split(".")
    if len(parts) == 3:
        header, payload = b64d(parts[0]), b64d(parts[1])
        ec = json.loads(header).get("kid") == "test-es256"
        mode = b"\x02" if ec else b"\x01"
        jws.append(mode + header + b"\xff" + payload)
        jws.append(mode + header + b"\xff" + payload + b"\xff" + bytes([0, 0, 5, ord("A")]))
        jws.append(mode + header + b"\xff" + payload + b"\xff" + bytes([2, 0x7f, 0xff, ord("A")]))
write("jws_verify", jws)

# limits: tool 0xFF arguments [0xFF authorization_details entry].
def lim(tool, args, detail=None):
    seed = tool.encode() + b"\xff" + json.dumps(args).encode()
    return seed if detail is None else seed + b"\xff" + json.dumps(detail).encode()

DETAIL = {"type": "mcp_tools", "tools": ["a/*"], "deny": ["a/secret*"],
          "limits": [{"tool": "a/b", "pointer": "/x~1y/1", "max": 3, "min": -1},
                     {"tool": "a/*", "pointer": "/s", "prefix": "p-"},
                     {"tool": "a/c", "pointer": "/e", "eq": 500, "in": [500.0, "500"]}]}
write("limits", [
    lim("expenses/submit_expense", {"amount": 120, "category": "travel"}),
    lim("expenses/submit_expense", {"amount": 620, "category": "travel"}),
    lim("expenses/submit_expense", {"amount": "10", "category": "meal"}),
    lim("expenses/submit_expense", {"amount": 500.0000000000001, "category": "meal"}),
    lim("expenses/submit_expense", {"category": "meal"}),
    lim("expenses/submit_expense", None),
    lim("expenses/list_expenses", {}),
    lim("expenses/list_secret_things", {}),
    lim("expenses/xnest", {"a/b": [7], "m~n": "ok-1", "items": [{}, {"price": 10.5}]}),
    lim("expenses/xempty", {"": 1, "a/b": [7.0], "m~n": "ok-"}),
    lim("expenses/xwhole", {"k": 1}),
    lim("expenses/xwhole", {"k": 1.0, "a/b": [7], "m~n": "ok-"}),
    lim("expenses/x", [1]),
    lim("a/b", {"x/y": [0, 2], "s": "p-1"}, DETAIL),
    lim("a/c", {"e": 500, "s": "p-"}, DETAIL),
    lim("a/secret", {}, DETAIL),
    lim("a/b", {"x/y": [0, 2]}, {**DETAIL, "windows": [{"days": ["mon", "tue"], "start": "09:00", "end": "17:00", "tz": "Europe/Paris"}]}),
])

write("jsonrpc_differential", BODIES)

# sse_list_filter_differential: flags (bit 0 = JSON answer, bit 1 = end flagged on an empty
# chunk) and chunking (0 = one chunk) before the upstream's bytes.
streams = []
for data in LISTS:
    streams += [
        "event: message\ndata: %s\n\n" % data,
        "id: 7\r\nevent: message\r\ndata: %s\r\n\r\n" % data,
        "event: message\rdata: %s\r\r" % data,
        "\ufeffevent: message\ndata: %s\n\n" % data,
        ": keep-alive\n\ndata: %s\ndata\n\n" % data.replace(",", "\ndata: ,", 2),
        "retry: 1000\ndata:%s\n\ndata: {}\n\n" % data,
    ]
sse = []
for i, s in enumerate(streams):
    sse.append(bytes([0, 0]) + s.encode())
    sse.append(bytes([2, 1 + i % 200]) + s.encode())
for data in LISTS:
    sse.append(bytes([1, 0]) + data.encode())
write("sse_list_filter_differential", sse)

BASE = """listen: 127.0.0.1:8080
public_url: https://gw.example.com/
issuer: {url: 'http://127.0.0.1:9000'}
upstreams:
  - {name: expenses, url: 'http://127.0.0.1:8001/mcp'}
"""
FULL = """listen: 127.0.0.1:8080
admin_listen: 127.0.0.1:9090
public_url: https://gw.example.com/
threads: 2
max_body_bytes: 65536
leeway_seconds: 30
downstream_token_ttl_seconds: 60
allowed_hosts: [gw.example.com]
allowed_origins: ['https://app.example.com']
token_cache_size: 1000
grace_period_seconds: 5
issuer:
  url: http://127.0.0.1:9000
  jwks_url: http://127.0.0.1:9000/.well-known/jwks.json
revocation:
  mode: strict
  max_staleness_seconds: 30
  retry_max_seconds: 10
audit:
  dir: /tmp/portcullis-audit
  gateway_id: gw-1
  ship: false
upstreams:
  - name: expenses
    url: http://127.0.0.1:8001/mcp
    resource: https://gw.example.com/mcp/expenses
    connect_timeout_seconds: 5
    idle_timeout_seconds: 60
  - name: mail
    url: http://127.0.0.1:8002/mcp
    downstream_auth: {header: {name: X-Api-Key, value_from_env: MAIL_KEY}}
  - {name: files, url: 'http://[::1]:8003/', downstream_auth: none}
fleets:
  - {name: office, members: [expenses, mail]}
"""
write("config", [BASE, FULL, BASE + "max_body_bytes: 10\n",
                 BASE.replace("expenses", "a__b"), "upstreams: [", "*a: &a [*a]", "{}", ""])
