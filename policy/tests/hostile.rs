//! Hostile tokens: each is refused with the error that names what is wrong with it.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use portcullis_policy::claims::ClaimsError;
use portcullis_policy::constraint::ConstraintError;
use portcullis_policy::{
    ActorRule, Algorithm, Expected, KeySet, SigningKey, Verifier, VerifyError,
};
use serde_json::{Value, json};

fn refused(token: &str) -> VerifyError {
    verifier()
        .verify(token, &expected())
        .expect_err("hostile token was accepted")
}

#[test]
fn well_formed_token_is_accepted() {
    let token = sign_json(&header(), &claims());
    let verified = verifier().verify(&token, &expected()).unwrap();
    assert_eq!(verified.claims().subject, "alice");
}

#[test]
fn alg_none_without_signature_is_refused() {
    let h = json!({"alg": "none", "typ": "at+jwt", "kid": ED_KID});
    let token = format!(
        "{}.{}.",
        b64(h.to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(refused(&token), VerifyError::Malformed);
}

#[test]
fn alg_none_with_a_signature_is_refused() {
    let token = token_with_header(|h| h["alg"] = json!("none"));
    assert_eq!(
        refused(&token),
        VerifyError::DisallowedAlgorithm("none".into())
    );
}

#[test]
fn alg_none_in_other_case_is_refused() {
    let token = token_with_header(|h| h["alg"] = json!("NoNe"));
    assert_eq!(refused(&token).code(), "disallowed_algorithm");
}

#[test]
fn alg_name_in_wrong_case_is_refused() {
    let token = token_with_header(|h| h["alg"] = json!("eddsa"));
    assert_eq!(refused(&token).code(), "disallowed_algorithm");
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic key-confusion attack: HMAC keyed with the verifier's public key bytes.
    let public = ed_key().public_jwk();
    let secret = URL_SAFE_NO_PAD.decode(&public.x).unwrap();
    let mut jwt_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    jwt_header.typ = Some("at+jwt".into());
    jwt_header.kid = Some(ED_KID.into());
    let token = jsonwebtoken::encode(
        &jwt_header,
        &claims(),
        &jsonwebtoken::EncodingKey::from_secret(&secret),
    )
    .unwrap();
    assert_eq!(
        refused(&token),
        VerifyError::DisallowedAlgorithm("HS256".into())
    );
}

#[test]
fn rs256_is_refused() {
    let token = token_with_header(|h| h["alg"] = json!("RS256"));
    assert_eq!(refused(&token).code(), "disallowed_algorithm");
}

#[test]
fn algorithm_outside_a_narrowed_allowlist_is_refused() {
    let ec_token = portcullis_policy::sign(
        &serde_json::from_value::<portcullis_policy::RawClaims>(claims())
            .unwrap()
            .try_into()
            .unwrap(),
        &ec_key(),
    );
    let eddsa_only = verifier().with_algorithms(&[Algorithm::EdDsa]);
    assert_eq!(
        eddsa_only.verify(&ec_token, &expected()).unwrap_err(),
        VerifyError::DisallowedAlgorithm("ES256".into())
    );
    assert!(verifier().verify(&ec_token, &expected()).is_ok());
}

#[test]
fn es256_header_over_an_ed25519_kid_is_refused() {
    let token = token_with_header(|h| h["alg"] = json!("ES256"));
    assert_eq!(refused(&token).code(), "algorithm_key_mismatch");
}

#[test]
fn unknown_kid_is_refused() {
    let token = token_with_header(|h| h["kid"] = json!("someone-else"));
    assert_eq!(
        refused(&token),
        VerifyError::UnknownKid("someone-else".into())
    );
}

#[test]
fn kid_with_path_characters_is_refused() {
    let token = token_with_header(|h| h["kid"] = json!("../../keys/test-ed25519"));
    assert_eq!(refused(&token), VerifyError::InvalidKid);
}

#[test]
fn missing_kid_is_refused() {
    let token = token_with_header(|h| {
        h.as_object_mut().unwrap().remove("kid");
    });
    assert_eq!(refused(&token), VerifyError::MissingKid);
}

#[test]
fn typ_jwt_is_not_explicit_typing_and_is_refused() {
    let token = token_with_header(|h| h["typ"] = json!("JWT"));
    assert_eq!(refused(&token), VerifyError::WrongType(Some("JWT".into())));
}

#[test]
fn missing_typ_is_refused() {
    let token = token_with_header(|h| {
        h.as_object_mut().unwrap().remove("typ");
    });
    assert_eq!(refused(&token), VerifyError::WrongType(None));
}

#[test]
fn crit_header_is_refused() {
    let token = token_with_header(|h| h["crit"] = json!(["exp"]));
    assert_eq!(refused(&token), VerifyError::UnsupportedHeader("crit"));
}

#[test]
fn remote_key_url_in_header_is_refused() {
    let token = token_with_header(|h| h["jku"] = json!("https://attacker.example/jwks.json"));
    assert_eq!(refused(&token), VerifyError::UnsupportedHeader("jku"));
}

#[test]
fn embedded_key_in_header_is_refused() {
    let token =
        token_with_header(|h| h["jwk"] = serde_json::to_value(ed_key().public_jwk()).unwrap());
    assert_eq!(refused(&token), VerifyError::UnsupportedHeader("jwk"));
}

#[test]
fn certificate_references_in_header_are_refused() {
    let token = token_with_header(|h| h["x5u"] = json!("https://attacker.example/cert.pem"));
    assert_eq!(refused(&token), VerifyError::UnsupportedHeader("x5u"));
    let token = token_with_header(|h| h["x5c"] = json!(["MIIB"]));
    assert_eq!(refused(&token), VerifyError::UnsupportedHeader("x5c"));
}

#[test]
fn duplicate_header_keys_are_refused() {
    let header = format!(r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{ED_KID}"}}"#);
    let token = sign_raw(header.as_bytes(), claims().to_string().as_bytes());
    assert_eq!(refused(&token).code(), "bad_header");
}

#[test]
fn expired_token_is_refused() {
    let token = token_with(|c| c["exp"] = json!(NOW - 60));
    assert_eq!(
        refused(&token),
        VerifyError::Expired {
            exp: NOW - 60,
            now: NOW
        }
    );
}

#[test]
fn token_expired_within_the_leeway_is_accepted_and_beyond_it_refused() {
    let token = token_with(|c| c["exp"] = json!(NOW - 5));
    assert!(verifier().verify(&token, &expected()).is_ok());
    let strict = verifier().with_leeway(0);
    assert_eq!(
        strict.verify(&token, &expected()).unwrap_err().code(),
        "expired"
    );
}

#[test]
fn nbf_in_the_future_is_refused() {
    let token = token_with(|c| c["nbf"] = json!(NOW + 3600));
    assert_eq!(refused(&token).code(), "not_yet_valid");
}

#[test]
fn iat_in_the_future_is_refused() {
    let token = token_with(|c| c["iat"] = json!(NOW + 3600));
    assert_eq!(refused(&token).code(), "issued_in_future");
}

#[test]
fn wrong_issuer_is_refused() {
    let token = token_with(|c| c["iss"] = json!("https://evil.test"));
    assert_eq!(refused(&token).code(), "wrong_issuer");
}

#[test]
fn wrong_audience_is_refused() {
    let token = token_with(|c| c["aud"] = json!("https://gw.test/mcp/payroll"));
    assert_eq!(refused(&token).code(), "wrong_audience");
}

#[test]
fn audience_list_without_this_resource_is_refused() {
    let token = token_with(|c| c["aud"] = json!(["https://a.test", "https://b.test"]));
    assert_eq!(refused(&token).code(), "wrong_audience");
}

#[test]
fn token_without_act_is_not_a_delegation_token() {
    let token = token_with(|c| {
        c.as_object_mut().unwrap().remove("act");
    });
    assert_eq!(refused(&token), VerifyError::MissingActor);
}

#[test]
fn token_with_act_is_refused_where_none_is_allowed() {
    let token = sign_json(&header(), &claims());
    let err = verifier()
        .verify(
            &token,
            &Expected {
                actor: ActorRule::Forbidden,
                ..expected()
            },
        )
        .unwrap_err();
    assert_eq!(err, VerifyError::UnexpectedActor);
}

fn replace_payload(token: &str, claims: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        b64(claims.to_string().as_bytes()),
        parts[2]
    )
}

#[test]
fn tampered_amount_limit_is_refused() {
    let token = sign_json(&header(), &claims());
    let mut raised = claims();
    raised["authorization_details"][0]["limits"][0]["max"] = json!(50_000);
    assert_eq!(
        refused(&replace_payload(&token, &raised)),
        VerifyError::BadSignature
    );
}

#[test]
fn tampered_act_chain_is_refused() {
    let token = sign_json(&header(), &claims());
    let mut forged = claims();
    forged["act"] = json!({"sub": "admin-agent"});
    assert_eq!(
        refused(&replace_payload(&token, &forged)),
        VerifyError::BadSignature
    );
}

#[test]
fn signature_by_another_key_under_our_kid_is_refused() {
    let impostor = SigningKey::ed25519_from_seed(ED_KID, &[0x99; 32]).unwrap();
    let claims = serde_json::from_value::<portcullis_policy::RawClaims>(claims())
        .unwrap()
        .try_into()
        .unwrap();
    let token = portcullis_policy::sign(&claims, &impostor);
    assert_eq!(refused(&token), VerifyError::BadSignature);
}

#[test]
fn truncated_signature_is_refused() {
    let token = sign_json(&header(), &claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let short = format!("{input}.{}", b64(&signature[..63]));
    assert_eq!(refused(&short), VerifyError::BadSignature);
}

#[test]
fn oversized_token_is_refused_before_parsing() {
    let token = token_with(|c| c["pad"] = json!("x".repeat(10_000)));
    assert_eq!(refused(&token).code(), "oversized");
}

#[test]
fn non_json_payload_is_refused() {
    let token = sign_raw(header().to_string().as_bytes(), b"not json at all");
    assert_eq!(refused(&token).code(), "bad_payload");
}

#[test]
fn duplicate_claim_keys_are_refused() {
    let claims = claims().to_string();
    let doubled = claims.replacen('{', r#"{"sub":"mallory","#, 1);
    let token = sign_raw(header().to_string().as_bytes(), doubled.as_bytes());
    let err = refused(&token);
    assert_eq!(err.code(), "bad_payload");
    assert!(err.to_string().contains("duplicate key"), "{err}");
}

#[test]
fn claim_of_the_wrong_type_is_refused() {
    let token = token_with(|c| c["exp"] = json!("tomorrow"));
    assert_eq!(refused(&token).code(), "bad_payload");
}

#[test]
fn missing_exp_is_refused() {
    let token = token_with(|c| {
        c.as_object_mut().unwrap().remove("exp");
    });
    assert_eq!(
        refused(&token),
        VerifyError::Claims(ClaimsError::Missing("exp"))
    );
}

#[test]
fn sender_constrained_token_presented_as_bearer_is_refused() {
    let token =
        token_with(|c| c["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}));
    assert_eq!(refused(&token), VerifyError::ProofRequired);
}

#[test]
fn unknown_authorization_detail_type_is_refused() {
    let token =
        token_with(|c| c["authorization_details"] = json!([{"type": "payment_initiation"}]));
    assert_eq!(
        refused(&token),
        VerifyError::Claims(ClaimsError::Constraints(ConstraintError::UnsupportedType(
            "payment_initiation".into()
        )))
    );
}

#[test]
fn five_part_jwe_shaped_token_is_refused() {
    let token = format!("{}.a.b", sign_json(&header(), &claims()));
    assert_eq!(refused(&token), VerifyError::Malformed);
}

#[test]
fn padding_or_whitespace_in_the_token_is_refused() {
    let token = sign_json(&header(), &claims());
    assert_eq!(refused(&format!("{token}=")), VerifyError::Malformed);
    assert_eq!(refused(&format!(" {token}")), VerifyError::Malformed);
}

#[test]
fn empty_verifier_key_set_trusts_nothing() {
    let token = sign_json(&header(), &claims());
    let empty = Verifier::new(ISSUER, KeySet::default());
    assert_eq!(
        empty.verify(&token, &expected()).unwrap_err().code(),
        "unknown_kid"
    );
}

/// A DPoP request to the test audience at `NOW`, made with `key` for `token`.
fn proof_for(key: &SigningKey, token: &str, jti: &str) -> String {
    portcullis_policy::create_proof(
        key,
        &portcullis_policy::ProofRequest {
            method: "POST",
            url: AUDIENCE,
            access_token: Some(token),
            nonce: None,
            jti,
            issued_at: NOW,
        },
    )
}

fn request() -> portcullis_policy::Expectation<'static> {
    portcullis_policy::Expectation {
        method: "POST",
        url: AUDIENCE,
        access_token: None,
        nonces: None,
        now: NOW,
        max_age: 60,
        leeway: 5,
    }
}

fn bound_to(key: &SigningKey) -> String {
    token_with(|c| c["cnf"] = json!({"jkt": key.thumbprint()}))
}

#[test]
fn a_bound_token_with_its_keys_proof_is_accepted() {
    let agent = SigningKey::es256_from_secret("agent", &[5; 32]).unwrap();
    let token = bound_to(&agent);
    let proof = proof_for(&agent, &token, "jti-1");
    let (verified, proof) = verifier()
        .verify_with_proof(&token, &expected(), &proof, &request())
        .unwrap();
    assert_eq!(verified.claims().confirmation, Some(agent.thumbprint()));
    assert_eq!(proof.jti, "jti-1");
}

#[test]
fn a_bound_token_with_another_keys_proof_is_refused() {
    let agent = SigningKey::es256_from_secret("agent", &[5; 32]).unwrap();
    let thief = SigningKey::es256_from_secret("thief", &[6; 32]).unwrap();
    let token = bound_to(&agent);
    let proof = proof_for(&thief, &token, "jti-1");
    assert_eq!(
        verifier()
            .verify_with_proof(&token, &expected(), &proof, &request())
            .unwrap_err(),
        VerifyError::Proof(portcullis_policy::DpopError::WrongKey)
    );
}

#[test]
fn a_proof_made_for_another_token_is_refused() {
    let agent = SigningKey::es256_from_secret("agent", &[5; 32]).unwrap();
    let token = bound_to(&agent);
    let other = token_with(|c| {
        c["cnf"] = json!({"jkt": agent.thumbprint()});
        c["jti"] = json!("another-token");
    });
    let proof = proof_for(&agent, &other, "jti-1");
    assert_eq!(
        verifier()
            .verify_with_proof(&token, &expected(), &proof, &request())
            .unwrap_err(),
        VerifyError::Proof(portcullis_policy::DpopError::WrongTokenHash)
    );
}

#[test]
fn a_proof_with_an_unbound_token_is_refused() {
    let agent = SigningKey::es256_from_secret("agent", &[5; 32]).unwrap();
    let token = sign_json(&header(), &claims());
    let proof = proof_for(&agent, &token, "jti-1");
    assert_eq!(
        verifier()
            .verify_with_proof(&token, &expected(), &proof, &request())
            .unwrap_err(),
        VerifyError::NotBound
    );
}
