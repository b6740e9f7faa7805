//! Proofs as an attacker would send them: each refused for its own reason.

use super::*;

const URL: &str = "https://gw.example.com/mcp/expenses";
const TOKEN: &str = "eyJ.the-access-token.sig";
const NOW: i64 = 1_800_000_000;

fn key() -> SigningKey {
    SigningKey::es256_from_secret("agent", &[7; 32]).unwrap()
}

fn request<'a>() -> ProofRequest<'a> {
    ProofRequest {
        method: "POST",
        url: URL,
        access_token: Some(TOKEN),
        nonce: None,
        jti: "jti-0123456789abcdef",
        issued_at: NOW,
    }
}

fn expected<'a>() -> Expectation<'a> {
    Expectation {
        method: "POST",
        url: URL,
        access_token: Some(TOKEN),
        nonces: None,
        now: NOW,
        max_age: 60,
        leeway: 5,
    }
}

/// A proof with `header` and `claims` as given, signed with `key`.
fn forge(key: &SigningKey, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn parts(proof: &str) -> (Value, Value) {
    let mut parts = proof.split('.');
    let mut next =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

#[test]
fn a_proof_verifies_and_names_its_key() {
    for key in [
        key(),
        SigningKey::ed25519_from_seed("agent", &[9; 32]).unwrap(),
    ] {
        let proof = create_proof(&key, &request());
        let verified = verify_proof(&proof, &expected()).unwrap();
        assert_eq!(verified.thumbprint, key.thumbprint());
        assert_eq!(verified.jti, "jti-0123456789abcdef");
        assert_eq!(verified.issued_at, NOW);
    }
}

#[test]
fn the_thumbprint_is_rfc_7638s() {
    // RFC 9449 §6.1's example key and its `jkt`.
    let jwk = Jwk {
        kty: "EC".into(),
        crv: "P-256".into(),
        x: "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs".into(),
        y: Some("9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA".into()),
        kid: "ignored".into(),
        alg: Some("ES256".into()),
        key_use: None,
    };
    assert_eq!(
        thumbprint(&jwk),
        "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
    );
}

#[test]
fn the_url_is_compared_as_rfc_9449_normalises_it() {
    for same in [
        "HTTPS://GW.example.com/mcp/expenses",
        "https://gw.example.com:443/mcp/expenses",
        "https://gw.example.com/mcp/expenses?x=1#frag",
    ] {
        let proof = create_proof(
            &key(),
            &ProofRequest {
                url: same,
                ..request()
            },
        );
        assert!(verify_proof(&proof, &expected()).is_ok(), "{same}");
    }
    for other in [
        "https://gw.example.com/mcp/mail",
        "http://gw.example.com/mcp/expenses",
        "https://gw.example.com:8443/mcp/expenses",
        "https://evil.example.com/mcp/expenses",
        "https://gw.example.com/mcp/expenses/",
        "/mcp/expenses",
    ] {
        let proof = create_proof(
            &key(),
            &ProofRequest {
                url: other,
                ..request()
            },
        );
        assert!(
            matches!(
                verify_proof(&proof, &expected()),
                Err(DpopError::WrongUrl { .. })
            ),
            "{other}"
        );
    }
}

#[test]
fn the_method_must_be_the_requests() {
    let proof = create_proof(
        &key(),
        &ProofRequest {
            method: "GET",
            ..request()
        },
    );
    assert!(matches!(
        verify_proof(&proof, &expected()),
        Err(DpopError::WrongMethod { .. })
    ));
}

#[test]
fn stale_and_future_proofs_are_refused_and_the_edges_of_the_window_pass() {
    for (iat, ok) in [
        (NOW - 65, true),
        (NOW - 66, false),
        (NOW + 5, true),
        (NOW + 6, false),
    ] {
        let proof = create_proof(
            &key(),
            &ProofRequest {
                issued_at: iat,
                ..request()
            },
        );
        let outcome = verify_proof(&proof, &expected());
        assert_eq!(outcome.is_ok(), ok, "iat {iat}: {outcome:?}");
    }
}

#[test]
fn the_token_hash_must_be_the_presented_tokens() {
    let without = create_proof(
        &key(),
        &ProofRequest {
            access_token: None,
            ..request()
        },
    );
    assert_eq!(
        verify_proof(&without, &expected()),
        Err(DpopError::MissingTokenHash)
    );
    let other = create_proof(
        &key(),
        &ProofRequest {
            access_token: Some("another"),
            ..request()
        },
    );
    assert_eq!(
        verify_proof(&other, &expected()),
        Err(DpopError::WrongTokenHash)
    );
    // At a token endpoint there is no token to hash: a proof that claims one is refused.
    let at_token_endpoint = Expectation {
        access_token: None,
        ..expected()
    };
    let proof = create_proof(&key(), &request());
    assert_eq!(
        verify_proof(&proof, &at_token_endpoint),
        Err(DpopError::WrongTokenHash)
    );
    assert!(verify_proof(&without, &at_token_endpoint).is_ok());
}

#[test]
fn a_required_nonce_must_be_carried() {
    let accepted = ["n-1".to_owned(), "n-2".to_owned()];
    let wanting = Expectation {
        nonces: Some(&accepted),
        ..expected()
    };
    let proof = create_proof(&key(), &request());
    assert_eq!(verify_proof(&proof, &wanting), Err(DpopError::WrongNonce));
    let stale = create_proof(
        &key(),
        &ProofRequest {
            nonce: Some("n-0"),
            ..request()
        },
    );
    assert_eq!(verify_proof(&stale, &wanting), Err(DpopError::WrongNonce));
    for nonce in ["n-1", "n-2"] {
        let fresh = create_proof(
            &key(),
            &ProofRequest {
                nonce: Some(nonce),
                ..request()
            },
        );
        assert!(verify_proof(&fresh, &wanting).is_ok(), "{nonce}");
    }
}

#[test]
fn symmetric_and_unsigned_algorithms_are_refused() {
    let proof = create_proof(&key(), &request());
    let (header, claims) = parts(&proof);
    for alg in ["none", "HS256", "RS256", "es256", ""] {
        let mut header = header.clone();
        header["alg"] = json!(alg);
        let forged = forge(&key(), &header, &claims);
        assert!(
            matches!(
                verify_proof(&forged, &expected()),
                Err(DpopError::DisallowedAlgorithm(_))
            ),
            "{alg}"
        );
    }
    // `alg: none` with an empty signature.
    let mut header = header;
    header["alg"] = json!("none");
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    assert!(verify_proof(&unsigned, &expected()).is_err());
}

#[test]
fn a_private_key_in_the_jwk_is_refused() {
    let proof = create_proof(&key(), &request());
    let (mut header, claims) = parts(&proof);
    header["jwk"]["d"] = json!(URL_SAFE_NO_PAD.encode([7u8; 32]));
    let forged = forge(&key(), &header, &claims);
    assert_eq!(
        verify_proof(&forged, &expected()),
        Err(DpopError::PrivateKey)
    );
}

#[test]
fn a_proof_signed_by_another_key_than_its_jwk_is_refused() {
    let proof = create_proof(&key(), &request());
    let (header, claims) = parts(&proof);
    let thief = SigningKey::es256_from_secret("thief", &[8; 32]).unwrap();
    let forged = forge(&thief, &header, &claims);
    assert_eq!(
        verify_proof(&forged, &expected()),
        Err(DpopError::BadSignature)
    );
}

#[test]
fn the_wrong_type_keys_named_elsewhere_and_crit_are_refused() {
    let proof = create_proof(&key(), &request());
    let (header, claims) = parts(&proof);
    for (member, value) in [
        ("typ", json!("JWT")),
        ("crit", json!(["exp"])),
        ("kid", json!("agent")),
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("x5c", json!(["MII"])),
    ] {
        let mut header = header.clone();
        header[member] = value;
        let forged = forge(&key(), &header, &claims);
        assert!(verify_proof(&forged, &expected()).is_err(), "{member}");
    }
    let mut header = header;
    header.as_object_mut().unwrap().remove("jwk");
    let forged = forge(&key(), &header, &claims);
    assert!(matches!(
        verify_proof(&forged, &expected()),
        Err(DpopError::BadKey(_))
    ));
}

#[test]
fn a_key_of_another_algorithm_than_the_header_names_is_refused() {
    let ed = SigningKey::ed25519_from_seed("agent", &[9; 32]).unwrap();
    let proof = create_proof(&ed, &request());
    let (mut header, claims) = parts(&proof);
    header["alg"] = json!("ES256");
    let forged = forge(&ed, &header, &claims);
    assert!(matches!(
        verify_proof(&forged, &expected()),
        Err(DpopError::BadKey(_))
    ));
}

#[test]
fn malformed_proofs_are_refused_without_panicking() {
    let proof = create_proof(&key(), &request());
    let (header, claims) = parts(&proof);
    let mut duplicated = claims.to_string();
    duplicated.insert_str(1, r#""htm":"GET","#);
    let duplicate_claim = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(duplicated),
        proof.rsplit('.').next().unwrap()
    );
    for hostile in [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        &"A".repeat(MAX_PROOF_LEN + 1),
        &duplicate_claim,
    ] {
        assert!(verify_proof(hostile, &expected()).is_err(), "{hostile:.40}");
    }
    let mut no_jti = claims.clone();
    no_jti.as_object_mut().unwrap().remove("jti");
    assert!(matches!(
        verify_proof(&forge(&key(), &header, &no_jti), &expected()),
        Err(DpopError::BadClaims(_))
    ));
    let mut long_jti = claims;
    long_jti["jti"] = json!("j".repeat(MAX_JTI_LEN + 1));
    assert!(matches!(
        verify_proof(&forge(&key(), &header, &long_jti), &expected()),
        Err(DpopError::BadClaims(_))
    ));
}

#[test]
fn nonces_rotate_by_window_and_the_previous_one_is_still_accepted() {
    let source = NonceSource::new([9; 32], 60);
    let at = |t| source.current(t);
    assert_eq!(at(NOW - NOW % 60), at(NOW - NOW % 60 + 59));
    assert_ne!(at(NOW - NOW % 60), at(NOW - NOW % 60 + 60));
    let accepted = source.accepted(NOW + 60);
    assert!(accepted.contains(&at(NOW)) && accepted.contains(&at(NOW + 60)));
    assert!(!source.accepted(NOW + 120).contains(&at(NOW)));
    assert_ne!(
        NonceSource::new([8; 32], 60).current(NOW),
        at(NOW),
        "another key, other nonces"
    );
    assert!(!format!("{source:?}").contains('9'));
}
