//! The claims of a Portcullis token (RFC 9068 JWT access token profile, RFC 8693 `act`).
//!
//! [`RawClaims`] is the JSON payload as it arrives; [`Claims`] is what survives validation and
//! the only form the rest of the crate reads. The conversion fails closed: a missing required
//! claim, an `act` chain deeper than [`MAX_ACTOR_DEPTH`], a confirmation (`cnf`) claim other
//! than a DPoP key thumbprint, or malformed constraints refuse the token.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::constraint::{ConstraintError, Constraints};

/// The deepest `act` chain accepted; it bounds recursion and token size.
pub const MAX_ACTOR_DEPTH: usize = 16;

/// Why a token payload is not a valid set of claims.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// A claim RFC 9068 requires is absent or empty.
    #[error("missing required claim {0:?}")]
    Missing(&'static str),
    /// The payload does not have the shape of a claims set.
    #[error("malformed claims: {0}")]
    Malformed(String),
    /// The `act` chain nests deeper than [`MAX_ACTOR_DEPTH`].
    #[error("act chain deeper than {MAX_ACTOR_DEPTH}")]
    ActorChainTooDeep,
    /// The token is sender-constrained (`cnf`) by other means than a DPoP key thumbprint
    /// (`jkt`), which this crate cannot check.
    #[error("token is sender-constrained (cnf) by a method other than a DPoP key (jkt)")]
    UnsupportedConfirmation,
    /// The `authorization_details` are invalid.
    #[error(transparent)]
    Constraints(#[from] ConstraintError),
}

/// An actor in an RFC 8693 `act` chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's identity: for agents, their OAuth `client_id`.
    pub sub: String,
}

/// The agents a token was delegated through, current actor first.
///
/// On the wire this is RFC 8693's nested `act` object: the outermost `act` is the current actor
/// and each nested `act` the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorChain {
    actors: Vec<Actor>,
}

impl ActorChain {
    /// A chain of one actor.
    pub fn new(actor: Actor) -> Self {
        Self {
            actors: vec![actor],
        }
    }

    /// This chain with `actor` appended as the new current actor.
    pub fn delegate_to(&self, actor: Actor) -> Result<Self, ClaimsError> {
        if self.actors.len() >= MAX_ACTOR_DEPTH {
            return Err(ClaimsError::ActorChainTooDeep);
        }
        let mut actors = Vec::with_capacity(self.actors.len() + 1);
        actors.push(actor);
        actors.extend(self.actors.iter().cloned());
        Ok(Self { actors })
    }

    /// The current actor: the agent presenting the token.
    pub fn current(&self) -> &Actor {
        &self.actors[0]
    }

    /// Every actor, current first, the original delegate last.
    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    fn from_raw(raw: RawActor) -> Result<Self, ClaimsError> {
        let mut actors = Vec::new();
        let mut next = Some(raw);
        while let Some(RawActor { sub, act }) = next {
            if actors.len() == MAX_ACTOR_DEPTH {
                return Err(ClaimsError::ActorChainTooDeep);
            }
            if sub.is_empty() {
                return Err(ClaimsError::Missing("act.sub"));
            }
            actors.push(Actor { sub });
            next = act.map(|b| *b);
        }
        Ok(Self { actors })
    }

    fn to_raw(&self) -> RawActor {
        self.actors
            .iter()
            .rev()
            .fold(None, |inner, actor| {
                Some(RawActor {
                    sub: actor.sub.clone(),
                    act: inner.map(Box::new),
                })
            })
            .expect("an actor chain is never empty")
    }
}

/// The `act` claim as it appears on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawActor {
    /// The actor.
    pub sub: String,
    /// The actor before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<RawActor>>,
}

/// One audience or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawAudience {
    /// A single audience string.
    One(String),
    /// A list of audiences.
    Many(Vec<String>),
}

/// The payload of a token as it arrives, before validation.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RawClaims {
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Subject: the human on whose behalf the agent acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audience: the resource the token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<RawAudience>,
    /// Expiry, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not before, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Issued at, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Token id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The OAuth client the token was issued to (the current actor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Space-separated OAuth scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// RFC 8693 actor chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<RawActor>,
    /// Root grant id, shared by every token delegated from one grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    /// RFC 9396 authorization details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_details: Option<Vec<Value>>,
    /// RFC 7800 confirmation (proof of possession).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Value>,
}

/// Validated claims of a Portcullis token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `iss`.
    pub issuer: String,
    /// `sub`: the user.
    pub subject: String,
    /// `aud`.
    pub audience: Vec<String>,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `nbf`, Unix seconds.
    pub not_before: Option<i64>,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
    /// `jti`.
    pub token_id: String,
    /// `client_id`.
    pub client_id: String,
    /// `scope`.
    pub scope: Option<String>,
    /// `act`, current actor first.
    pub actors: Option<ActorChain>,
    /// `gid`: the root grant.
    pub grant_id: Option<String>,
    /// `authorization_details`, validated.
    pub constraints: Option<Constraints>,
    /// `cnf.jkt`: the thumbprint of the key a DPoP proof must be signed with, for a
    /// sender-constrained token.
    pub confirmation: Option<String>,
}

/// The DPoP key thumbprint of a `cnf` claim (RFC 9449 §6.1): an object whose only member is
/// `jkt`, a base64url SHA-256. Any other confirmation method is one this crate cannot check.
fn key_thumbprint(cnf: Value) -> Result<String, ClaimsError> {
    let Value::Object(members) = cnf else {
        return Err(ClaimsError::UnsupportedConfirmation);
    };
    match (members.len(), members.get("jkt")) {
        (1, Some(Value::String(jkt)))
            if jkt.len() == 43
                && jkt
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')) =>
        {
            Ok(jkt.clone())
        }
        _ => Err(ClaimsError::UnsupportedConfirmation),
    }
}

fn required(value: Option<String>, name: &'static str) -> Result<String, ClaimsError> {
    value
        .filter(|v| !v.is_empty())
        .ok_or(ClaimsError::Missing(name))
}

impl TryFrom<RawClaims> for Claims {
    type Error = ClaimsError;

    fn try_from(raw: RawClaims) -> Result<Self, Self::Error> {
        let confirmation = raw.cnf.map(key_thumbprint).transpose()?;
        let audience = match raw.aud {
            Some(RawAudience::One(a)) => vec![a],
            Some(RawAudience::Many(list)) => list,
            None => Vec::new(),
        };
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(ClaimsError::Missing("aud"));
        }
        Ok(Claims {
            issuer: required(raw.iss, "iss")?,
            subject: required(raw.sub, "sub")?,
            audience,
            expires_at: raw.exp.ok_or(ClaimsError::Missing("exp"))?,
            not_before: raw.nbf,
            issued_at: raw.iat.ok_or(ClaimsError::Missing("iat"))?,
            token_id: required(raw.jti, "jti")?,
            client_id: required(raw.client_id, "client_id")?,
            scope: raw.scope,
            actors: raw.act.map(ActorChain::from_raw).transpose()?,
            grant_id: raw.gid,
            constraints: raw
                .authorization_details
                .map(|d| Constraints::from_authorization_details(&d))
                .transpose()?,
            confirmation,
        })
    }
}

impl From<&Claims> for RawClaims {
    fn from(c: &Claims) -> Self {
        RawClaims {
            iss: Some(c.issuer.clone()),
            sub: Some(c.subject.clone()),
            aud: Some(match c.audience.as_slice() {
                [one] => RawAudience::One(one.clone()),
                many => RawAudience::Many(many.to_vec()),
            }),
            exp: Some(c.expires_at),
            nbf: c.not_before,
            iat: Some(c.issued_at),
            jti: Some(c.token_id.clone()),
            client_id: Some(c.client_id.clone()),
            scope: c.scope.clone(),
            act: c.actors.as_ref().map(ActorChain::to_raw),
            gid: c.grant_id.clone(),
            authorization_details: c.constraints.clone().map(Vec::from),
            cnf: c
                .confirmation
                .as_ref()
                .map(|jkt| serde_json::json!({"jkt": jkt})),
        }
    }
}

impl Claims {
    /// Whether `audience` is one of the token's audiences.
    pub fn has_audience(&self, audience: &str) -> bool {
        self.audience.iter().any(|a| a == audience)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn raw(value: Value) -> RawClaims {
        serde_json::from_value(value).unwrap()
    }

    fn base() -> Value {
        json!({
            "iss": "https://issuer", "sub": "alice", "aud": "https://gw/mcp/expenses",
            "exp": 2000, "iat": 1000, "jti": "t1", "client_id": "agent-b",
            "act": {"sub": "agent-b", "act": {"sub": "agent-a"}}
        })
    }

    #[test]
    fn nested_act_reads_current_actor_first() {
        let claims = Claims::try_from(raw(base())).unwrap();
        let chain = claims.actors.unwrap();
        assert_eq!(chain.current().sub, "agent-b");
        let subs: Vec<&str> = chain.actors().iter().map(|a| a.sub.as_str()).collect();
        assert_eq!(subs, ["agent-b", "agent-a"]);
    }

    #[test]
    fn claims_round_trip_to_the_same_json() {
        let claims = Claims::try_from(raw(base())).unwrap();
        let back = serde_json::to_value(RawClaims::from(&claims)).unwrap();
        assert_eq!(back, base());
    }

    #[test]
    fn each_required_claim_is_required() {
        for name in ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"] {
            let mut value = base();
            value.as_object_mut().unwrap().remove(name);
            let err = Claims::try_from(raw(value)).unwrap_err();
            assert_eq!(err, ClaimsError::Missing(name));
        }
    }

    #[test]
    fn a_dpop_key_thumbprint_binds_the_token_and_other_confirmations_are_refused() {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let mut value = base();
        value["cnf"] = json!({"jkt": jkt});
        let claims = Claims::try_from(raw(value.clone())).unwrap();
        assert_eq!(claims.confirmation.as_deref(), Some(jkt));
        assert_eq!(
            serde_json::to_value(RawClaims::from(&claims)).unwrap(),
            value
        );
        for cnf in [
            json!({"jkt": "abc"}),
            json!({"jkt": jkt, "x5t#S256": "abc"}),
            json!({"x5t#S256": jkt}),
            json!({"jwk": {"kty": "EC"}}),
            json!(jkt),
            json!({"jkt": 42}),
        ] {
            let mut value = base();
            value["cnf"] = cnf.clone();
            assert_eq!(
                Claims::try_from(raw(value)).unwrap_err(),
                ClaimsError::UnsupportedConfirmation,
                "{cnf}"
            );
        }
    }

    #[test]
    fn act_chain_deeper_than_the_cap_is_refused() {
        let mut act = json!({"sub": "a0"});
        for i in 1..=MAX_ACTOR_DEPTH {
            act = json!({"sub": format!("a{i}"), "act": act});
        }
        let mut value = base();
        value["act"] = act;
        assert_eq!(
            Claims::try_from(raw(value)).unwrap_err(),
            ClaimsError::ActorChainTooDeep
        );
    }
}
