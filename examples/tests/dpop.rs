//! DPoP (RFC 9449) from the issuer, through a re-delegation, to the gateway, with real parts:
//! an agent with its own key gets a bound client token, exchanges for a bound delegation
//! token and calls through the gateway; the same token without a proof, with another key's
//! proof, with a replayed proof, with a proof for another URL, and as Bearer are all refused,
//! and the upstream sees none of them. A sub-agent's bound token works only with its own key.

use portcullis_examples::agent::{ClientCredentials, DpopKey, IssuerClient, expense_grant};
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};

const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"dpop-agent","version":"1"}}}"#;

struct World {
    stack: Stack,
    issuer: IssuerClient,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        Self::start_with("").await
    }

    async fn start_with(gateway_extra_yaml: &str) -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let options = StackOptions {
            gateway_extra_yaml: gateway_extra_yaml.to_owned(),
            ..StackOptions::sqlite(dir.path())
        };
        let stack = Stack::start(&options).await.unwrap();
        let issuer = IssuerClient::new(&stack.issuer_url, &stack.admin_token);
        World {
            stack,
            issuer,
            _dir: dir,
        }
    }

    /// The agent's client token, bound to `key`; asserts the answer says so.
    async fn bound_client_token(&self, agent: &ClientCredentials, key: &DpopKey) -> String {
        let body = key
            .client_token(&self.issuer, agent)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body["token_type"], "DPoP", "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// An exchange by `client`, with `proof` when given: the answer, or the OAuth error code.
    async fn exchange(
        &self,
        client: &ClientCredentials,
        subject: &str,
        actor: &str,
        proof: Option<&str>,
    ) -> Result<Value, String> {
        let form = [
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", actor),
            ("actor_token_type", ACCESS_TOKEN),
            ("resource", &self.stack.resource),
        ];
        self.issuer
            .token_response(client, &form, proof)
            .await
            .unwrap()
            .map_err(|e| e.error)
    }

    /// `initialize` at the gateway with `authorization` and `dpop` headers: the status, the
    /// challenge, and the body.
    async fn call(&self, authorization: &str, dpop: Option<&str>) -> (u16, String, Value) {
        let (status, challenge, _, body) = self.call_for_nonce(authorization, dpop).await;
        (status, challenge, body)
    }

    /// As [`call`](Self::call), with the `DPoP-Nonce` the gateway answered.
    async fn call_for_nonce(
        &self,
        authorization: &str,
        dpop: Option<&str>,
    ) -> (u16, String, Option<String>, Value) {
        let mut request = reqwest::Client::new()
            .post(&self.stack.resource)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(INITIALIZE);
        if let Some(proof) = dpop {
            request = request.header("dpop", proof);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (challenge, nonce) = (
            header("www-authenticate").unwrap_or_default(),
            header("dpop-nonce"),
        );
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .or_else(|_| {
                let data = text
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or("null");
                serde_json::from_str(data)
            })
            .unwrap_or(Value::Null);
        (status, challenge, nonce, body)
    }

    /// A new agent with a key of its own, and its delegation token for alice's grant, bound
    /// to that key; asserts the issuer says it is bound.
    async fn bound_agent(&self) -> (DpopKey, String) {
        let agent = self
            .issuer
            .register_agent("dpop-agent", "DPoP agent")
            .await
            .unwrap();
        let key = DpopKey::generate();
        let actor = self.bound_client_token(&agent, &key).await;
        let grant_id = self
            .issuer
            .grant("alice", &agent.id, &self.stack.resource, expense_grant())
            .await
            .unwrap();
        let subject = self.issuer.subject_token(&grant_id).await.unwrap();
        let answer = self.exchange(&agent, &subject, &actor, None).await.unwrap();
        assert_eq!(answer["token_type"], "DPoP", "{answer}");
        (key, answer["access_token"].as_str().unwrap().to_owned())
    }

    fn upstream_requests(&self) -> usize {
        self.stack.expenses.seen_requests().len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_works_only_with_its_keys_fresh_proof() {
    let w = World::start().await;
    let (key, token) = w.bound_agent().await;

    let resource = w.stack.resource.clone();
    let good = key.proof(&resource, Some(&token));
    let (status, _, body) = w.call(&format!("DPoP {token}"), Some(&good)).await;
    assert_eq!(status, 200, "{body}");
    let seen = w.upstream_requests();
    assert!(seen > 0, "the upstream served the agent");

    let thief = DpopKey::generate();
    let other_url = format!("{}/mcp/other", w.stack.gateway_url);
    for (what, authorization, dpop, reason) in [
        ("no proof", format!("DPoP {token}"), None, "proof_missing"),
        (
            "as Bearer",
            format!("Bearer {token}"),
            None,
            "proof_required",
        ),
        (
            "as Bearer with a proof",
            format!("Bearer {token}"),
            Some(key.proof(&resource, Some(&token))),
            "proof_required",
        ),
        (
            "another key's proof",
            format!("DPoP {token}"),
            Some(thief.proof(&resource, Some(&token))),
            "proof_key_mismatch",
        ),
        (
            "a replayed proof",
            format!("DPoP {token}"),
            Some(good.clone()),
            "proof_replayed",
        ),
        (
            "a proof for another URL",
            format!("DPoP {token}"),
            Some(key.proof(&other_url, Some(&token))),
            "proof_url",
        ),
        (
            "a proof without the token's hash",
            format!("DPoP {token}"),
            Some(key.proof(&resource, None)),
            "proof_token_hash",
        ),
    ] {
        let (status, challenge, body) = w.call(&authorization, dpop.as_deref()).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"]["code"], -31002, "{what}: {body}");
        assert_eq!(body["error"]["data"]["reason"], reason, "{what}: {body}");
        assert!(
            challenge.starts_with("DPoP algs=\"ES256 EdDSA\""),
            "{what}: {challenge}"
        );
    }
    assert_eq!(
        w.upstream_requests(),
        seen,
        "the upstream saw none of the refused requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_delegation_binds_the_sub_agents_key_and_never_drops_the_binding() {
    let w = World::start().await;
    let agent = w
        .issuer
        .register_agent("dpop-agent", "DPoP agent")
        .await
        .unwrap();
    let helper = w
        .issuer
        .register_agent("dpop-helper", "Helper")
        .await
        .unwrap();
    let (agent_key, helper_key) = (DpopKey::generate(), DpopKey::generate());
    let actor = w.bound_client_token(&agent, &agent_key).await;
    let grant_id = w
        .issuer
        .grant("alice", &agent.id, &w.stack.resource, expense_grant())
        .await
        .unwrap();
    let subject = w.issuer.subject_token(&grant_id).await.unwrap();
    let parent = w.exchange(&agent, &subject, &actor, None).await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let helper_actor = w.bound_client_token(&helper, &helper_key).await;
    let token_url = w.issuer.token_url();

    // The bound parent is exchanged only with its key's proof.
    assert_eq!(
        w.exchange(&agent, &parent, &helper_actor, None)
            .await
            .unwrap_err(),
        "invalid_dpop_proof"
    );
    let stolen = DpopKey::generate().proof(&token_url, None);
    assert_eq!(
        w.exchange(&agent, &parent, &helper_actor, Some(&stolen))
            .await
            .unwrap_err(),
        "invalid_dpop_proof"
    );
    // Never to an agent whose client token is bound to no key.
    let unbound_actor = w.issuer.client_token(&helper).await.unwrap();
    let by_agent = agent_key.proof(&token_url, None);
    assert_eq!(
        w.exchange(&agent, &parent, &unbound_actor, Some(&by_agent))
            .await
            .unwrap_err(),
        "invalid_dpop_proof"
    );
    let by_agent = agent_key.proof(&token_url, None);
    let child = w
        .exchange(&agent, &parent, &helper_actor, Some(&by_agent))
        .await
        .unwrap();
    assert_eq!(child["token_type"], "DPoP", "{child}");
    let child = child["access_token"].as_str().unwrap();

    let resource = &w.stack.resource;
    let by_helper = helper_key.proof(resource, Some(child));
    let (status, _, body) = w.call(&format!("DPoP {child}"), Some(&by_helper)).await;
    assert_eq!(status, 200, "{body}");
    let by_parent_key = agent_key.proof(resource, Some(child));
    let (status, _, body) = w.call(&format!("DPoP {child}"), Some(&by_parent_key)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["data"]["reason"], "proof_key_mismatch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_announces_dpop_and_refuses_bad_proofs_at_its_token_endpoint() {
    let w = World::start().await;
    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-authorization-server",
        w.stack.issuer_url
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(
        metadata["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
    let agent = w
        .issuer
        .register_agent("dpop-agent", "DPoP agent")
        .await
        .unwrap();
    let key = DpopKey::generate();
    let form = [("grant_type", "client_credentials")];
    let elsewhere = key.proof(&format!("{}/revoke", w.stack.issuer_url), None);
    let with_hash = key.proof(&w.issuer.token_url(), Some("a-token"));
    let good = key.proof(&w.issuer.token_url(), None);
    for bad in [elsewhere.as_str(), with_hash.as_str(), "not.a.proof"] {
        let refused = w
            .issuer
            .token_response(&agent, &form, Some(bad))
            .await
            .unwrap();
        assert_eq!(
            refused.unwrap_err().error,
            "invalid_dpop_proof",
            "{bad:.30}"
        );
    }
    assert!(
        w.issuer
            .token_response(&agent, &form, Some(&good))
            .await
            .unwrap()
            .is_ok()
    );
    let replayed = w
        .issuer
        .token_response(&agent, &form, Some(&good))
        .await
        .unwrap();
    assert_eq!(replayed.unwrap_err().error, "invalid_dpop_proof");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nonces_on_a_proof_carries_the_gateways_current_nonce() {
    let w = World::start_with("dpop_nonces: true\n").await;
    let (key, token) = w.bound_agent().await;
    let resource = &w.stack.resource;
    let authorization = format!("DPoP {token}");
    let before = w.upstream_requests();
    for nonce in [None, Some("a-nonce-the-gateway-never-issued")] {
        let proof = key.proof_with_nonce(resource, Some(&token), nonce);
        let (status, challenge, issued, body) =
            w.call_for_nonce(&authorization, Some(&proof)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"]["data"]["reason"], "use_dpop_nonce");
        assert!(
            challenge.contains(r#"error="use_dpop_nonce""#),
            "{challenge}"
        );
        assert!(issued.is_some(), "a DPoP-Nonce to retry with");
    }
    assert_eq!(
        w.upstream_requests(),
        before,
        "nothing reached the upstream"
    );
    let (_, _, issued, _) = w
        .call_for_nonce(&authorization, Some(&key.proof(resource, Some(&token))))
        .await;
    let retry = key.proof_with_nonce(resource, Some(&token), issued.as_deref());
    let (status, _, body) = w.call(&authorization, Some(&retry)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_dpop_is_required_a_bearer_token_is_refused() {
    let w = World::start_with("require_dpop: true\n").await;
    let agent = w
        .issuer
        .register_agent("bearer-agent", "Bearer agent")
        .await
        .unwrap();
    let (_, bearer) = w
        .issuer
        .delegation(&agent, "alice", &w.stack.resource, expense_grant())
        .await
        .unwrap();
    let before = w.upstream_requests();
    let (status, challenge, body) = w.call(&format!("Bearer {bearer}"), None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["data"]["reason"], "proof_required");
    assert!(challenge.starts_with("DPoP "), "{challenge}");
    assert_eq!(w.upstream_requests(), before, "the upstream saw nothing");
    // A bound token with its proof still goes through.
    let (key, token) = w.bound_agent().await;
    let proof = key.proof(&w.stack.resource, Some(&token));
    let (status, _, body) = w.call(&format!("DPoP {token}"), Some(&proof)).await;
    assert_eq!(status, 200, "{body}");
}

/// oauth4webapi, a third-party OAuth client library (npm), obtains bound tokens with proofs of
/// its own making and uses one through the gateway (`examples/interop/dpop_client.mjs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_dpop_client_obtains_and_uses_a_bound_token() {
    let Some([node, library]) = portcullis_examples::interop::tools_from_env([
        "PORTCULLIS_NODE",
        "PORTCULLIS_OAUTH4WEBAPI",
    ]) else {
        return;
    };
    let w = World::start().await;
    let agent = w
        .issuer
        .register_agent("oauth4webapi-agent", "oauth4webapi")
        .await
        .unwrap();
    let grant_id = w
        .issuer
        .grant("alice", &agent.id, &w.stack.resource, expense_grant())
        .await
        .unwrap();
    let subject = w.issuer.subject_token(&grant_id).await.unwrap();
    let before = w.upstream_requests();
    let script =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/dpop_client.mjs");
    let run = tokio::process::Command::new(node)
        .arg(script)
        .env("OAUTH4WEBAPI_MODULE", library)
        .env("ISSUER_URL", &w.stack.issuer_url)
        .env("CLIENT_ID", &agent.id)
        .env("CLIENT_SECRET", &agent.secret)
        .env("SUBJECT_TOKEN", &subject)
        .env("RESOURCE", &w.stack.resource)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), run)
        .await
        .expect("the client finished within a minute")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the oauth4webapi client failed:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(seen["dpopAlgs"], json!(["ES256", "EdDSA"]), "{seen}");
    assert_eq!(seen["clientTokenType"], "dpop", "{seen}");
    assert_eq!(seen["delegationTokenType"], "dpop", "{seen}");
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["serverName"], "expenses", "{seen}");
    assert_eq!(seen["asBearer"], 401, "{seen}");
    assert_eq!(
        w.upstream_requests(),
        before + 1,
        "the upstream saw the one proven call"
    );
}
