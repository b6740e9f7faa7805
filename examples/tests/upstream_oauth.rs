//! Per-person upstream OAuth (`downstream_auth: oauth`), with an upstream whose parts come from
//! the registries: an MCP server (FastMCP, PyPI) that takes only JWTs of its own authorization
//! server (`oidc-provider`, npm), where each person signs in with an account of their own.
//! Alice and Bob each link their account once; the upstream tells their agents' calls apart;
//! the rotating refresh tokens are used as the server requires; revoking the grant or
//! unlinking drops the link. In Chromium, a person links hers from the account page.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::Locator;
use portcullis_examples::agent::{ClientCredentials, IssuerClient, McpSession, connect};
use portcullis_examples::browser::{self, Browser};
use portcullis_examples::interop::tools_from_env;
use portcullis_examples::oauth_upstream::{Installed, OAuthUpstream};
use portcullis_examples::person::{Person, create_user};
use portcullis_examples::stack::{Stack, StackOptions};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const PASSWORD: &str = "upstream-oauth-password";
/// Access tokens at the upstream last 20 s: the issuer refreshes any with less than 30 s
/// left, so every token it hands out here has been refreshed, rotating the refresh token.
const ACCESS_TTL: u64 = 20;

fn installed() -> Option<Installed> {
    let [node, oidc_provider] = tools_from_env(["PORTCULLIS_NODE", "PORTCULLIS_OIDC_PROVIDER"])?;
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/fastmcp/bin/python");
    if !python.exists() {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "FastMCP is not installed in .tools/fastmcp (run ./scripts/test.sh)"
        );
        return None;
    }
    Some(Installed {
        node,
        oidc_provider,
        python,
    })
}

struct World {
    stack: Stack,
    issuer: IssuerClient,
    agent: ClientCredentials,
    upstream: OAuthUpstream,
    resource: String,
    dir: tempfile::TempDir,
}

impl World {
    async fn start(installed: &Installed) -> World {
        let upstream = OAuthUpstream::start(installed, ACCESS_TTL).await.unwrap();
        let dir = tempfile::TempDir::new().unwrap();
        let options = StackOptions {
            // Decisions shipped: the gateway holds the issuer's gateway token, which asks
            // for people's tokens too.
            audit_dir: Some(dir.path().join("audit")),
            extra_upstreams: vec![format!(
                "{{name: notes, url: '{}', downstream_auth: oauth}}",
                upstream.url
            )],
            ..StackOptions::sqlite(dir.path())
        };
        let stack = Stack::start(&options).await.unwrap();
        let resource = format!("{}/mcp/notes", stack.gateway_url);
        let registered = reqwest::Client::new()
            .post(format!("{}/admin/upstreams", stack.issuer_url))
            .bearer_auth(&stack.admin_token)
            .json(&json!({"resource": resource, "upstream_url": upstream.url}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            registered.status(),
            201,
            "{}",
            registered.text().await.unwrap()
        );
        let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
        let agent = issuer
            .register_agent("notes-agent", "Notes agent")
            .await
            .unwrap();
        World {
            stack,
            issuer,
            agent,
            upstream,
            resource,
            dir,
        }
    }

    async fn person(&self, name: &str) -> Person {
        create_user(self.dir.path(), name, PASSWORD, &self.resource)
            .await
            .unwrap();
        Person::sign_in(&self.stack.issuer_url, name, PASSWORD)
            .await
            .unwrap()
    }

    /// A grant from `user` to the agent for the upstream's tools: its id and the agent's token.
    async fn delegation(&self, user: &str) -> (String, String) {
        let grant = json!([{"type": "mcp_tools", "tools": ["notes/whoami", "notes/echo"]}]);
        self.issuer
            .delegation(&self.agent, user, &self.resource, grant)
            .await
            .unwrap()
    }

    /// What an agent holding `token` is told at `initialize` before its person linked an
    /// account: the JSON-RPC error.
    async fn refused_initialize(&self, token: &str) -> Value {
        let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "upstream-oauth-test", "version": "1"}}});
        let response = reqwest::Client::new()
            .post(&self.resource)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["error"].clone()
    }

    /// `person` follows the link: signs in at the upstream's server as `login`, consents, and
    /// comes back to the issuer, which stores their tokens.
    async fn link(&self, person: &Person, link_url: &str, login: &str) {
        let sent = person.get(link_url).await.unwrap();
        assert_eq!(
            sent.status(),
            303,
            "the issuer sends them to the upstream's server"
        );
        let authorize = sent.headers()["location"].to_str().unwrap().to_owned();
        assert!(authorize.starts_with(&self.upstream.issuer), "{authorize}");
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        let back = self
            .upstream
            .sign_in_and_consent(&authorize, login)
            .await
            .unwrap();
        assert!(
            back.starts_with(&format!("{}/link/callback", self.stack.issuer_url)),
            "{back}"
        );
        let linked = person.get(&back).await.unwrap();
        assert_eq!(linked.status(), 200);
        assert!(linked.text().await.unwrap().contains("is linked"));
    }
}

async fn whoami(session: &McpSession) -> String {
    let result = session
        .call_tool(CallToolRequestParams::new("whoami"))
        .await
        .unwrap();
    result.content[0].as_text().unwrap().text.clone()
}

#[tokio::test]
async fn each_person_links_their_own_account_and_the_upstream_tells_them_apart() {
    let Some(installed) = installed() else {
        return;
    };
    let w = World::start(&installed).await;
    let alice = w.person("alice").await;
    let bob = w.person("bob").await;
    let (alice_grant, alice_token) = w.delegation("alice").await;
    let (_, bob_token) = w.delegation("bob").await;

    // Before linking, the agent is told where its person links an account; nothing is sent
    // upstream without the person's own token.
    let refused = w.refused_initialize(&alice_token).await;
    assert_eq!(refused["code"], -31015, "{refused}");
    assert_eq!(refused["data"]["reason"], "link_required");
    let link_url = refused["data"]["link_url"].as_str().unwrap().to_owned();
    assert!(
        link_url.starts_with(&format!("{}/link?", w.stack.issuer_url)),
        "{link_url}"
    );

    // The account page offers the link too.
    let account = alice.get("/account").await.unwrap().text().await.unwrap();
    assert!(account.contains("link your account"), "{account}");

    // A callback finished by another signed-in person links nobody, and uses the request up.
    let sent = alice.get(&link_url).await.unwrap();
    let authorize = sent.headers()["location"].to_str().unwrap().to_owned();
    let back = w
        .upstream
        .sign_in_and_consent(&authorize, "alice-upstream")
        .await
        .unwrap();
    assert_eq!(bob.get(&back).await.unwrap().status(), 400);
    assert_eq!(
        alice.get(&back).await.unwrap().status(),
        400,
        "answered once"
    );
    assert_eq!(
        w.refused_initialize(&alice_token).await["data"]["reason"],
        "link_required"
    );

    w.link(&alice, &link_url, "alice-upstream").await;
    w.link(&bob, &link_url, "bob-upstream").await;

    // The upstream sees each person as themselves.
    let alice_session = connect(&w.resource, &alice_token).await.unwrap();
    let bob_session = connect(&w.resource, &bob_token).await.unwrap();
    assert_eq!(whoami(&alice_session).await, "alice-upstream");
    assert_eq!(whoami(&bob_session).await, "bob-upstream");
    let account = alice.get("/account").await.unwrap().text().await.unwrap();
    assert!(
        account.contains(&w.resource),
        "the account page lists the link"
    );

    // Past the gateway's copy of the token, the issuer refreshes it again with the refresh
    // token the server rotated last time (a reused one would revoke the whole grant there).
    tokio::time::sleep(Duration::from_secs(ACCESS_TTL - 8)).await;
    assert_eq!(whoami(&alice_session).await, "alice-upstream");
    alice_session.cancel().await.unwrap();

    // Revoking the grant drops the link: the person's next grant must link again.
    w.issuer.revoke("grant", &alice_grant).await.unwrap();
    let (_, alice_again) = w.delegation("alice").await;
    assert_eq!(
        w.refused_initialize(&alice_again).await["data"]["reason"],
        "link_required"
    );

    // Unlinking on the account page drops it too.
    assert_eq!(
        bob.account_form("/account/links/unlink", &[("resource", &w.resource)])
            .await
            .unwrap(),
        303
    );
    let (_, bob_again) = w.delegation("bob").await;
    assert_eq!(
        w.refused_initialize(&bob_again).await["data"]["reason"],
        "link_required"
    );
    bob_session.cancel().await.unwrap();
}

/// Waits until the browser is at a page whose `main` says `text`.
async fn reaches(page: &fantoccini::Client, text: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(main) = page.find(Locator::Css("body")).await
            && main.text().await.unwrap_or_default().contains(text)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never saw {text:?} at {}",
            page.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_person_links_their_account_from_the_account_page_in_chromium() {
    let Some(installed) = installed() else {
        return;
    };
    let Some((chromium, driver)) = browser::installed() else {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "Chromium is missing: run ./scripts/test.sh"
        );
        return;
    };
    let w = World::start(&installed).await;
    w.person("carol").await;
    let (_, token) = w.delegation("carol").await;

    let browser = Browser::start(&chromium, &driver).await.unwrap();
    let page = &browser.client;
    page.goto(&format!("{}/account", w.stack.issuer_url))
        .await
        .unwrap();
    browser::sign_in(page, "carol", PASSWORD).await.unwrap();
    reaches(page, "Your accounts at upstreams").await;
    browser::shoot(page, "account-upstreams.png").await.unwrap();
    page.find(Locator::LinkText("link your account"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The upstream's own sign-in and consent, then back at the issuer.
    page.wait()
        .for_element(Locator::Css("input[name=login]"))
        .await
        .unwrap()
        .send_keys("carol-upstream")
        .await
        .unwrap();
    page.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys("her password there")
        .await
        .unwrap();
    page.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    reaches(page, "Authorize").await;
    page.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    reaches(page, "is linked").await;
    browser::shoot(page, "account-linked.png").await.unwrap();

    let session = connect(&w.resource, &token).await.unwrap();
    assert_eq!(whoami(&session).await, "carol-upstream");
    session.cancel().await.unwrap();
}
