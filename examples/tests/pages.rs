//! The pages an MCP client's user meets when the client signs in through the issuer (OAuth
//! authorization code + PKCE), in Chromium: the sign-in page, the consent page with the tools
//! in plain words and one checkbox each, and the redirect back with a code that the client
//! exchanges for tokens limited to what the person left ticked. Screenshots of each go to
//! `docs/screenshots/`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fantoccini::Locator;
use portcullis_examples::browser::{self, Browser};
use portcullis_examples::person::create_user;
use portcullis_examples::stack::{Stack, StackOptions};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "consent-password-1234";
const VERIFIER: &str = "a-pkce-verifier-of-enough-length-for-rfc-7636-0123456789";

#[tokio::test]
async fn a_person_signs_in_and_consents_to_fewer_tools_in_chromium_and_the_token_says_so() {
    let Some((chromium, driver)) = browser::installed() else {
        assert!(
            std::env::var_os("PORTCULLIS_REQUIRE_INTEROP").is_none(),
            "Chromium is missing: run ./scripts/test.sh"
        );
        eprintln!("skipping: Chromium is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&StackOptions::sqlite(dir.path()))
        .await
        .unwrap();
    create_user(dir.path(), "alice", PASSWORD, &stack.resource)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    // A public client registers itself (RFC 7591), as MCP clients do.
    let callback = "http://127.0.0.1:9/callback";
    let registered: Value = http
        .post(format!("{}/register", stack.issuer_url))
        .json(
            &json!({"client_name": "Desk assistant", "redirect_uris": [callback],
                      "token_endpoint_auth_method": "none"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap().to_owned();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(VERIFIER.as_bytes()));
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", callback)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("resource", &stack.resource)
        .append_pair(
            "scope",
            "mcp:tools:expenses/list_expenses mcp:tools:expenses/submit_expense",
        )
        .append_pair("state", "s-123")
        .finish();

    let browser = Browser::start(&chromium, &driver).await.unwrap();
    let page = &browser.client;
    page.goto(&format!("{}/authorize?{query}", stack.issuer_url))
        .await
        .unwrap();
    page.wait()
        .for_element(Locator::Css("input[name=username]"))
        .await
        .unwrap();
    let intro = page.find(Locator::Css("main")).await.unwrap();
    assert!(intro.text().await.unwrap().contains("Desk assistant"));
    browser::shoot(page, "authorize-sign-in.png").await.unwrap();
    browser::sign_in(page, "alice", PASSWORD).await.unwrap();

    // The consent page: one checkbox per tool, all ticked; alice unticks all but one.
    page.wait()
        .for_element(Locator::Css("button[value=approve]"))
        .await
        .unwrap();
    let boxes = page
        .find_all(Locator::Css("input[name=tool]"))
        .await
        .unwrap();
    assert!(boxes.len() > 1, "one checkbox per tool");
    browser::shoot(page, "consent.png").await.unwrap();
    let mut kept = None;
    for checkbox in &boxes {
        let tool = checkbox.attr("value").await.unwrap().unwrap();
        if tool.ends_with("list_expenses") {
            kept = Some(tool);
        } else {
            checkbox.click().await.unwrap();
        }
    }
    let kept = kept.expect("list_expenses is offered");
    page.find(Locator::Css("button[value=approve]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // Back at the client (nothing listens there): the code and the state in the URL.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let back = loop {
        let url = page.current_url().await.unwrap();
        if url.as_str().starts_with(callback) {
            break url;
        }
        assert!(tokio::time::Instant::now() < deadline, "redirected: {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let param = |name: &str| {
        back.query_pairs()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("s-123"));
    assert_eq!(param("iss").as_deref(), Some(stack.issuer_url.as_str()));
    let code = param("code").expect("a code");

    let tokens: Value = http
        .post(format!("{}/token", stack.issuer_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", callback),
            ("client_id", &client_id),
            ("code_verifier", VERIFIER),
            ("resource", &stack.resource),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().expect("an access token");
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], "alice");
    let tools = &claims["authorization_details"][0]["tools"];
    assert_eq!(
        tools,
        &json!([kept]),
        "only what alice left ticked: {claims}"
    );
}
