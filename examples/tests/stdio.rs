//! Upstreams that speak MCP over stdio (`command:`), with published servers: the reference
//! memory server (npm `@modelcontextprotocol/server-memory`) pooled, the reference time server
//! (PyPI `mcp-server-time`) one per session, and the reference "everything" server over stdio
//! for progress, the environment it is given, and the kill switch. Filtering and judging are
//! the gateway's as for any upstream; what is checked here is that they hold in front of a
//! program, and what the gateway does with the program itself.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use portcullis_examples::agent::{
    ClientCredentials, IssuerClient, McpSession, RawSession, call, connect,
};
use portcullis_examples::interop::tools_from_env;
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};

struct World {
    stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    dir: tempfile::TempDir,
}

/// A stack with upstream `name` started by `command` (a YAML flow mapping).
async fn world(name: &str, command: impl FnOnce(&Path) -> String) -> World {
    let dir = tempfile::TempDir::new().unwrap();
    let options = StackOptions {
        extra_upstreams: vec![format!(
            "{{name: {name}, command: {}}}",
            command(dir.path())
        )],
        ..StackOptions::sqlite(dir.path())
    };
    let stack = Stack::start(&options).await.unwrap();
    let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
    let agent = issuer
        .register_agent("stdio-agent", "Stdio agent")
        .await
        .unwrap();
    World {
        stack,
        issuer,
        agent,
        dir,
    }
}

impl World {
    fn resource(&self, upstream: &str) -> String {
        format!("{}/mcp/{upstream}", self.stack.gateway_url)
    }

    /// A delegation token for `tools` at `upstream`, and its grant.
    async fn token(&self, upstream: &str, tools: &[&str]) -> (String, String) {
        let grant = json!([{"type": "mcp_tools", "tools": tools}]);
        self.issuer
            .delegation(&self.agent, "alice", &self.resource(upstream), grant)
            .await
            .unwrap()
    }

    async fn starts(&self, upstream: &str) -> u64 {
        let metrics = self.stack.gateway_metrics().await.unwrap();
        let line = format!("portcullis_gateway_stdio_starts_total{{upstream=\"{upstream}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse().unwrap())
    }

    /// The processes started with `MARKER` set to this world's directory.
    fn programs(&self) -> Vec<Process> {
        Process::all()
            .into_iter()
            .filter(|p| p.env.get("MARKER").map(String::as_str) == self.dir.path().to_str())
            .collect()
    }
}

/// A process as `/proc` shows it.
#[derive(Debug)]
struct Process {
    pid: u32,
    env: BTreeMap<String, String>,
}

impl Process {
    fn all() -> Vec<Process> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| {
                let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
                let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
                let env = environ
                    .split(|b| *b == 0)
                    .filter_map(|kv| {
                        let (k, v) = std::str::from_utf8(kv).ok()?.split_once('=')?;
                        Some((k.to_owned(), v.to_owned()))
                    })
                    .collect();
                Some(Process { pid, env })
            })
            .collect()
    }

    fn limit(&self, name: &str) -> String {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid)).unwrap();
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_default()
            .to_owned()
    }
}

async fn tool_names(session: &McpSession) -> Vec<String> {
    let mut names: Vec<String> = session
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    names.sort();
    names
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_pooled_stdio_server_is_judged_confined_and_started_again_when_it_dies() {
    let Some([node, memory]) = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_SERVER_MEMORY"])
    else {
        return;
    };
    let w = world("memory", |dir| {
        format!(
            "{{program: '{node}', args: ['{memory}'], working_dir: '{dir}', \
             env: {{MEMORY_FILE_PATH: '{dir}/memory.jsonl', MARKER: '{dir}'}}, \
             limits: {{open_files: 256}}}}",
            dir = dir.display()
        )
    })
    .await;
    let (_, token) = w
        .token("memory", &["memory/create_entities", "memory/read_graph"])
        .await;
    let session = connect(&w.resource("memory"), &token).await.unwrap();
    assert_eq!(
        tool_names(&session).await,
        ["create_entities", "read_graph"]
    );
    call(
        &session,
        "create_entities",
        json!({"entities": [{"name": "alice", "entityType": "person",
                             "observations": ["approves travel"]}]}),
    )
    .await
    .unwrap();

    // A tool outside the grant is refused, and never reaches the program.
    let refused = call(
        &session,
        "delete_entities",
        json!({"entityNames": ["alice"]}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code.0, -31001);
    assert_eq!(refused.data.unwrap()["reason"], "tool_not_granted");
    assert!(
        call(&session, "read_graph", json!({}))
            .await
            .unwrap()
            .contains("approves travel")
    );

    // One program for every session, started with exactly its environment, in its directory,
    // under its limits.
    let other = connect(&w.resource("memory"), &token).await.unwrap();
    assert!(
        call(&other, "read_graph", json!({}))
            .await
            .unwrap()
            .contains("alice")
    );
    assert_eq!(w.starts("memory").await, 1);
    let programs = w.programs();
    assert_eq!(programs.len(), 1, "{programs:?}");
    let program = &programs[0];
    assert_eq!(
        program.env.keys().collect::<Vec<_>>(),
        ["MARKER", "MEMORY_FILE_PATH"],
        "nothing of the gateway's environment is inherited"
    );
    assert!(
        program
            .limit("Max open files")
            .split_whitespace()
            .any(|w| w == "256")
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{}/cwd", program.pid)).unwrap(),
        w.dir.path()
    );

    // It dies: the next call starts it again, and it reads its own file back.
    let status = std::process::Command::new("kill")
        .args(["-9", &program.pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Gone from /proc once reaped: the gateway has noticed the exit.
    let dead = format!("/proc/{}", program.pid);
    eventually("the program is gone", || !Path::new(&dead).exists()).await;
    let graph = call(&session, "read_graph", json!({})).await.unwrap();
    assert!(graph.contains("approves travel"), "{graph}");
    assert_eq!(w.starts("memory").await, 2);
    session.cancel().await.unwrap();
    other.cancel().await.unwrap();
}

#[tokio::test]
async fn a_stdio_server_per_session_runs_once_for_each_session_and_ends_with_it() {
    let time =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/mcp-server-time/bin/mcp-server-time");
    if !time.exists() {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "mcp-server-time is not installed in .tools (run ./scripts/test.sh)"
        );
        return;
    }
    let w = world("time", |dir| {
        format!(
            "{{program: '{}', args: ['--local-timezone', 'UTC'], instances: per_session, \
             env: {{MARKER: '{}'}}}}",
            time.display(),
            dir.display()
        )
    })
    .await;
    let (_, token) = w.token("time", &["time/get_current_time"]).await;
    let first = connect(&w.resource("time"), &token).await.unwrap();
    let second = connect(&w.resource("time"), &token).await.unwrap();
    assert_eq!(tool_names(&first).await, ["get_current_time"]);
    for session in [&first, &second] {
        let now = call(
            session,
            "get_current_time",
            json!({"timezone": "Europe/Berlin"}),
        )
        .await
        .unwrap();
        assert!(now.contains("Europe/Berlin"), "{now}");
    }
    let refused = call(
        &first,
        "convert_time",
        json!({"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.data.unwrap()["reason"], "tool_not_granted");
    assert_eq!(w.starts("time").await, 2);
    assert_eq!(w.programs().len(), 2);

    // The session ends (DELETE): its program stops; the other session's runs on.
    first.cancel().await.unwrap();
    eventually("the first session's program stops", || {
        w.programs().len() == 1
    })
    .await;
    let now = call(
        &second,
        "get_current_time",
        json!({"timezone": "Asia/Tokyo"}),
    )
    .await
    .unwrap();
    assert!(now.contains("Asia/Tokyo"), "{now}");
    second.cancel().await.unwrap();
}

#[tokio::test]
async fn through_a_stdio_server_progress_arrives_and_a_revocation_ends_the_call() {
    let Some([node, everything]) = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_EVERYTHING"])
    else {
        return;
    };
    let w = world("everything", |dir| {
        format!(
            "{{program: '{node}', args: ['{everything}', 'stdio'], env: {{MARKER: '{}'}}}}",
            dir.display()
        )
    })
    .await;
    let (grant, token) = w
        .token(
            "everything",
            &[
                "everything/trigger-long-running-operation",
                "everything/get-env",
            ],
        )
        .await;

    // The program sees the environment it was given, not the gateway's.
    let session = connect(&w.resource("everything"), &token).await.unwrap();
    let env: Value =
        serde_json::from_str(&call(&session, "get-env", json!({})).await.unwrap()).unwrap();
    let names: Vec<&String> = env.as_object().unwrap().keys().collect();
    assert_eq!(names, ["MARKER"], "{env}");
    session.cancel().await.unwrap();

    // Progress of the agent's own request comes back under the agent's own token.
    let raw = RawSession::open(&w.resource("everything"), &token)
        .await
        .unwrap();
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 1, "steps": 2},
        "_meta": {"progressToken": "agent-token-1"}}});
    let text = raw
        .post(serde_json::to_vec(&request).unwrap())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text.matches(r#""progressToken":"agent-token-1""#).count(),
        2,
        "{text}"
    );
    assert!(text.contains("Long running operation completed"), "{text}");

    // A revocation ends a call under way at once.
    let long = json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 60, "steps": 60}}});
    let running = tokio::spawn({
        let raw = raw.clone();
        async move {
            let response = raw.post(serde_json::to_vec(&long).unwrap()).await.unwrap();
            portcullis_examples::agent::answer(response).await.unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let revoked_at = tokio::time::Instant::now();
    w.issuer.revoke("grant", &grant).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the call ends soon after the revocation")
        .unwrap();
    assert_eq!(ended["error"]["code"], -31007, "{ended}");
    assert!(revoked_at.elapsed() < Duration::from_secs(5));
}
