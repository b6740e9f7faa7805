//! Verified tokens for unit tests: signed and checked by the real policy code, so a test never
//! holds a token the gateway could not have verified.

use std::sync::Arc;

use portcullis_policy::{
    Actor, ActorChain, ActorRule, Claims, Expected, KeySet, SigningKey, VerifiedToken, Verifier,
    sign,
};

/// The claims of alice's token through `agent` under grant `g`, with id `token_id`, for
/// resource `https://gw/mcp/a`, issued at 0 and expiring at `exp`.
pub(crate) fn claims(token_id: &str, exp: i64) -> Claims {
    Claims {
        issuer: "https://issuer".into(),
        subject: "alice".into(),
        audience: vec!["https://gw/mcp/a".into()],
        expires_at: exp,
        not_before: None,
        issued_at: 0,
        token_id: token_id.into(),
        client_id: "agent".into(),
        scope: None,
        actors: Some(ActorChain::new(Actor {
            sub: "agent".into(),
        })),
        grant_id: Some("g".into()),
        confirmation: None,
        constraints: None,
    }
}

/// Those claims signed and verified: the compact token and its verified form.
pub(crate) fn verified(token_id: &str, exp: i64) -> (String, Arc<VerifiedToken>) {
    let key = SigningKey::ed25519_from_seed("k", &[1; 32]).unwrap();
    let token = sign(&claims(token_id, exp), &key);
    let mut keys = KeySet::default();
    keys.insert(key.verifying_key());
    let expected = Expected {
        audience: "https://gw/mcp/a",
        now: 0,
        actor: ActorRule::Required,
    };
    let verified = Verifier::new("https://issuer", keys)
        .verify(&token, &expected)
        .unwrap();
    (token, Arc::new(verified))
}
