//! Golden vectors: `testdata/golden.json` holds tokens signed with fixed test keys and the
//! verdict for each, so SDKs in other languages can check they agree with this one.
//!
//! Regenerate after an intended change with `PORTCULLIS_BLESS=1 cargo test -p portcullis-policy --test golden`.

mod common;

use common::*;
use portcullis_policy::{
    Action, Claims, Decision, KeySet, RawClaims, Verifier, arguments_digest, authorize, sign,
};
use serde_json::{Value, json};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/golden.json");

fn signed(claims: Value, ec: bool) -> String {
    let claims: Claims = serde_json::from_value::<RawClaims>(claims)
        .unwrap()
        .try_into()
        .unwrap();
    sign(&claims, &if ec { ec_key() } else { ed_key() })
}

fn expense_calls() -> Value {
    json!([
        {"tool": "expenses/submit_expense", "arguments": {"amount": 120, "category": "travel"}, "at": NOW, "decision": "permit"},
        {"tool": "expenses/submit_expense", "arguments": {"amount": 620, "category": "travel"}, "at": NOW, "decision": "limit_max"},
        {"tool": "expenses/submit_expense", "arguments": {"amount": 20, "category": "jewelry"}, "at": NOW, "decision": "limit_in"},
        {"tool": "expenses/submit_expense", "arguments": {"category": "meal"}, "at": NOW, "decision": "argument_missing"},
        {"tool": "expenses/delete_all_expenses", "arguments": {}, "at": NOW, "decision": "tool_not_granted"},
        {"tool": "expenses/list_expenses", "arguments": {}, "at": NOW, "decision": "permit"}
    ])
}

fn cases() -> Vec<Value> {
    let tampered = {
        let token = signed(claims(), false);
        let mut raised = claims();
        raised["authorization_details"][0]["limits"][0]["max"] = json!(50_000);
        let parts: Vec<&str> = token.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64(raised.to_string().as_bytes()),
            parts[2]
        )
    };
    let mut sub_agent = claims();
    sub_agent["client_id"] = json!("receipts-agent");
    sub_agent["act"] = json!({"sub": "receipts-agent", "act": {"sub": "expense-agent"}});
    sub_agent["authorization_details"][0]["limits"][0]["max"] = json!(100);
    sub_agent["authorization_details"][0]["max_depth"] = json!(0);
    let mut with_approval = claims();
    with_approval["authorization_details"][0]["approval"] = json!([
        {"tool": "expenses/submit_expense", "when": [{"pointer": "/amount", "min": 200}]}
    ]);
    vec![
        json!({"name": "valid EdDSA delegation token", "token": signed(claims(), false),
               "verify": "ok", "calls": expense_calls()}),
        json!({"name": "valid ES256 delegation token", "token": signed(claims(), true),
               "verify": "ok", "calls": expense_calls()}),
        json!({"name": "sub-agent token with a tighter amount limit", "token": signed(sub_agent, false),
        "verify": "ok", "calls": [
            {"tool": "expenses/submit_expense", "arguments": {"amount": 90, "category": "meal"}, "at": NOW, "decision": "permit"},
            {"tool": "expenses/submit_expense", "arguments": {"amount": 300, "category": "meal"}, "at": NOW, "decision": "limit_max"}
        ]}),
        json!({"name": "an approval term: 200 or more waits for the user; the digest is SHA-256 of the RFC 8785 canonical arguments, base64url",
               "token": signed(with_approval, false), "verify": "ok", "calls": [
            {"tool": "expenses/submit_expense", "arguments": {"amount": 150, "category": "travel"}, "at": NOW, "decision": "permit"},
            {"tool": "expenses/submit_expense", "arguments": {"category": "travel", "amount": 300}, "at": NOW,
             "decision": "approval_required", "digest": arguments_digest(&json!({"amount": 300, "category": "travel"}))},
            {"tool": "expenses/submit_expense", "arguments": {"amount": 300.5, "category": "travel", "note": "é\u{2028}"}, "at": NOW,
             "decision": "approval_required", "digest": arguments_digest(&json!({"amount": 300.5, "category": "travel", "note": "é\u{2028}"}))}
        ]}),
        json!({"name": "alg none", "token": token_with_header(|h| h["alg"] = json!("none")), "verify": "disallowed_algorithm"}),
        json!({"name": "typ JWT", "token": token_with_header(|h| h["typ"] = json!("JWT")), "verify": "wrong_type"}),
        json!({"name": "kid with path characters", "token": token_with_header(|h| h["kid"] = json!("../test-ed25519")), "verify": "invalid_kid"}),
        json!({"name": "unknown kid", "token": token_with_header(|h| h["kid"] = json!("nope")), "verify": "unknown_kid"}),
        json!({"name": "expired", "token": token_with(|c| c["exp"] = json!(NOW - 3600)), "verify": "expired"}),
        json!({"name": "not yet valid", "token": token_with(|c| c["nbf"] = json!(NOW + 3600)), "verify": "not_yet_valid"}),
        json!({"name": "wrong issuer", "token": token_with(|c| c["iss"] = json!("https://evil.test")), "verify": "wrong_issuer"}),
        json!({"name": "wrong audience", "token": token_with(|c| c["aud"] = json!("https://gw.test/mcp/payroll")), "verify": "wrong_audience"}),
        json!({"name": "no act chain", "token": token_with(|c| { c.as_object_mut().unwrap().remove("act"); }), "verify": "missing_actor"}),
        json!({"name": "tampered amount limit", "token": tampered, "verify": "bad_signature"}),
        json!({"name": "duplicate sub claim", "token": sign_raw(header().to_string().as_bytes(),
               claims().to_string().replacen('{', r#"{"sub":"mallory","#, 1).as_bytes()), "verify": "bad_payload"}),
    ]
}

fn document() -> Value {
    json!({
        "description": "Portcullis policy golden vectors. Verify each token with the jwks, issuer, audience and now given here (leeway 30 s, act required); 'verify' is the expected result, and for tokens that verify, each call's expected decision.",
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": NOW,
        "leeway_seconds": 30,
        "jwks": jwks(),
        "cases": cases(),
    })
}

#[test]
fn golden_file_matches_what_this_crate_signs() {
    let fresh = serde_json::to_string_pretty(&document()).unwrap() + "\n";
    if std::env::var_os("PORTCULLIS_BLESS").is_some() {
        std::fs::write(PATH, &fresh).unwrap();
    }
    let stored = std::fs::read_to_string(PATH).expect("testdata/golden.json exists");
    assert!(
        stored == fresh,
        "testdata/golden.json is stale; rerun with PORTCULLIS_BLESS=1 if the change is intended"
    );
}

#[test]
fn every_golden_vector_verifies_and_decides_as_recorded() {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(PATH).unwrap()).unwrap();
    let jwks = serde_json::from_value(doc["jwks"].clone()).unwrap();
    let verifier = Verifier::new(
        doc["issuer"].as_str().unwrap(),
        KeySet::from_jwks(&jwks).unwrap(),
    );
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 14);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let result = verifier.verify(case["token"].as_str().unwrap(), &expected());
        let verdict = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
        assert_eq!(verdict, case["verify"], "case {name:?}");
        let Ok(token) = result else { continue };
        for call in case["calls"].as_array().unwrap() {
            let decision = authorize(
                &token,
                &Action {
                    tool: call["tool"].as_str().unwrap(),
                    arguments: &call["arguments"],
                    at: call["at"].as_i64().unwrap(),
                    hints: None,
                },
            );
            let got = match &decision {
                Decision::Permit(_) => "permit",
                Decision::NeedsApproval(needed) => {
                    assert_eq!(
                        needed.digest(),
                        call["digest"],
                        "case {name:?}, call {call}"
                    );
                    "approval_required"
                }
                Decision::Deny(reason) => reason.code(),
            };
            assert_eq!(got, call["decision"], "case {name:?}, call {call}");
        }
    }
}
