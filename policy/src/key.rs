//! Signing keys, verifying keys and their JWK (RFC 7517) form.
//!
//! Each key is bound to exactly one algorithm (RFC 8725 §3.1 and 8725bis): a JWK's `kty`/`crv`
//! decide it, and a token whose header names another algorithm for that `kid` is refused.
//! Keys are parsed once into ready-to-use curve points, so a verification does no key decoding.
//! The crate creates no randomness: callers pass in seeds from their own CSPRNG.

use std::collections::HashMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signer as _;
use serde::{Deserialize, Serialize};

/// The longest `kid` accepted.
pub const MAX_KID_LEN: usize = 128;

/// A JWS algorithm this crate signs and verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Ed25519 (RFC 8037). The default.
    EdDsa,
    /// ECDSA on P-256 with SHA-256.
    Es256,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::EdDsa => "EdDSA",
            Algorithm::Es256 => "ES256",
        }
    }

    /// Parses a JOSE `alg` name, case-sensitively.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Algorithm::EdDsa),
            "ES256" => Some(Algorithm::Es256),
            _ => None,
        }
    }
}

/// Why a key could not be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The `kid` is empty, too long, or has characters outside `[A-Za-z0-9._-]`.
    #[error("invalid kid {0:?}")]
    InvalidKid(String),
    /// The key material does not decode to a valid key.
    #[error("invalid key material for kid {kid:?}: {reason}")]
    InvalidMaterial {
        /// The key's id.
        kid: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The JWK's `alg` disagrees with its `kty`/`crv`.
    #[error("jwk {kid:?} declares alg {alg:?}, which does not fit its key type")]
    AlgorithmMismatch {
        /// The key's id.
        kid: String,
        /// The declared algorithm.
        alg: String,
    },
}

/// Whether `kid` is safe to use as a lookup key: it is attacker input, so it is never used as
/// a path, URL or query, and only a plain token alphabet is accepted.
pub fn is_valid_kid(kid: &str) -> bool {
    !kid.is_empty()
        && kid.len() <= MAX_KID_LEN
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_kid(kid: &str) -> Result<(), KeyError> {
    if is_valid_kid(kid) {
        Ok(())
    } else {
        Err(KeyError::InvalidKid(kid.to_owned()))
    }
}

/// A public key in JWK form, as published in a JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP` or `EC`.
    pub kty: String,
    /// `Ed25519` or `P-256`.
    #[serde(default)]
    pub crv: String,
    /// Base64url public key, or the x coordinate.
    #[serde(default)]
    pub x: String,
    /// Base64url y coordinate (EC only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key id.
    pub kid: String,
    /// The one algorithm this key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

/// A JSON Web Key Set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwkSet {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// A public key ready to verify signatures with.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    inner: VerifyingInner,
}

#[derive(Clone)]
enum VerifyingInner {
    Ed25519(ed25519_dalek::VerifyingKey),
    Es256(p256::ecdsa::VerifyingKey),
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish()
    }
}

fn decode_coordinate(kid: &str, text: &str, what: &'static str) -> Result<[u8; 32], KeyError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or(KeyError::InvalidMaterial {
            kid: kid.to_owned(),
            reason: what,
        })
}

impl VerifyingKey {
    /// Parses a JWK, refusing key types and algorithms outside [`Algorithm`].
    ///
    /// Returns `Ok(None)` for a well-formed key of a type this crate does not use (say, an RSA
    /// key published beside ours), so one foreign key does not make a whole JWKS unusable.
    pub fn from_jwk(jwk: &Jwk) -> Result<Option<Self>, KeyError> {
        check_kid(&jwk.kid)?;
        let algorithm = match (jwk.kty.as_str(), jwk.crv.as_str()) {
            ("OKP", "Ed25519") => Algorithm::EdDsa,
            ("EC", "P-256") => Algorithm::Es256,
            _ => return Ok(None),
        };
        if let Some(alg) = &jwk.alg
            && alg != algorithm.as_str()
        {
            return Err(KeyError::AlgorithmMismatch {
                kid: jwk.kid.clone(),
                alg: alg.clone(),
            });
        }
        let kid = jwk.kid.clone();
        let x = decode_coordinate(&kid, &jwk.x, "x is not 32 base64url bytes")?;
        let inner = match algorithm {
            Algorithm::EdDsa => ed25519_dalek::VerifyingKey::from_bytes(&x)
                .map(VerifyingInner::Ed25519)
                .map_err(|_| KeyError::InvalidMaterial {
                    kid: kid.clone(),
                    reason: "not an Ed25519 point",
                })?,
            Algorithm::Es256 => {
                let y_text = jwk.y.as_deref().ok_or(KeyError::InvalidMaterial {
                    kid: kid.clone(),
                    reason: "EC key without y",
                })?;
                let y = decode_coordinate(&kid, y_text, "y is not 32 base64url bytes")?;
                let point =
                    p256::EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
                p256::ecdsa::VerifyingKey::from_encoded_point(&point)
                    .map(VerifyingInner::Es256)
                    .map_err(|_| KeyError::InvalidMaterial {
                        kid: kid.clone(),
                        reason: "not a P-256 point",
                    })?
            }
        };
        Ok(Some(Self { kid, inner }))
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            VerifyingInner::Ed25519(_) => Algorithm::EdDsa,
            VerifyingInner::Es256(_) => Algorithm::Es256,
        }
    }

    /// Verifies a raw JWS signature over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.inner {
            VerifyingInner::Ed25519(key) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
            VerifyingInner::Es256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                p256::ecdsa::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
        }
    }
}

/// The keys a verifier trusts, by `kid`.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    /// Builds a key set from a JWKS, skipping keys of foreign types.
    pub fn from_jwks(jwks: &JwkSet) -> Result<Self, KeyError> {
        let mut keys = HashMap::with_capacity(jwks.keys.len());
        for jwk in &jwks.keys {
            if let Some(key) = VerifyingKey::from_jwk(jwk)? {
                keys.insert(key.kid.clone(), key);
            }
        }
        Ok(Self { keys })
    }

    /// Adds or replaces a key.
    pub fn insert(&mut self, key: VerifyingKey) {
        self.keys.insert(key.kid.clone(), key);
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A private key that signs tokens.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    inner: SigningInner,
}

#[derive(Clone)]
enum SigningInner {
    Ed25519(ed25519_dalek::SigningKey),
    Es256(p256::ecdsa::SigningKey),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.algorithm())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// An Ed25519 key from its 32-byte secret seed.
    pub fn ed25519_from_seed(kid: &str, seed: &[u8; 32]) -> Result<Self, KeyError> {
        check_kid(kid)?;
        Ok(Self {
            kid: kid.to_owned(),
            inner: SigningInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)),
        })
    }

    /// A P-256 key from its 32-byte secret scalar.
    pub fn es256_from_secret(kid: &str, secret: &[u8; 32]) -> Result<Self, KeyError> {
        check_kid(kid)?;
        let key =
            p256::ecdsa::SigningKey::from_slice(secret).map_err(|_| KeyError::InvalidMaterial {
                kid: kid.to_owned(),
                reason: "not a valid P-256 scalar",
            })?;
        Ok(Self {
            kid: kid.to_owned(),
            inner: SigningInner::Es256(key),
        })
    }

    /// Rebuilds a key from [`SigningKey::secret_bytes`] and its algorithm.
    pub fn from_secret(
        kid: &str,
        algorithm: Algorithm,
        secret: &[u8; 32],
    ) -> Result<Self, KeyError> {
        match algorithm {
            Algorithm::EdDsa => Self::ed25519_from_seed(kid, secret),
            Algorithm::Es256 => Self::es256_from_secret(kid, secret),
        }
    }

    /// The 32 secret bytes, for storage encrypted at rest.
    pub fn secret_bytes(&self) -> [u8; 32] {
        match &self.inner {
            SigningInner::Ed25519(key) => key.to_bytes(),
            SigningInner::Es256(key) => key.to_bytes().into(),
        }
    }

    /// The key's id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            SigningInner::Ed25519(_) => Algorithm::EdDsa,
            SigningInner::Es256(_) => Algorithm::Es256,
        }
    }

    /// The public half, as a JWK to publish.
    pub fn public_jwk(&self) -> Jwk {
        let (kty, crv, x, y) = match &self.inner {
            SigningInner::Ed25519(key) => (
                "OKP",
                "Ed25519",
                URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
                None,
            ),
            SigningInner::Es256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                (
                    "EC",
                    "P-256",
                    URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point has x")),
                    Some(URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point has y"))),
                )
            }
        };
        Jwk {
            kty: kty.to_owned(),
            crv: crv.to_owned(),
            x,
            y,
            kid: self.kid.clone(),
            alg: Some(self.algorithm().as_str().to_owned()),
            key_use: Some("sig".to_owned()),
        }
    }

    /// The public half, ready to verify with.
    pub fn verifying_key(&self) -> VerifyingKey {
        let inner = match &self.inner {
            SigningInner::Ed25519(key) => VerifyingInner::Ed25519(key.verifying_key()),
            SigningInner::Es256(key) => VerifyingInner::Es256(*key.verifying_key()),
        };
        VerifyingKey {
            kid: self.kid.clone(),
            inner,
        }
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &self.inner {
            SigningInner::Ed25519(key) => key.sign(message).to_bytes().to_vec(),
            SigningInner::Es256(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_with_path_or_control_characters_is_invalid() {
        for kid in ["../../etc/passwd", "a/b", "a b", "", "k\0", "k;drop"] {
            assert!(!is_valid_kid(kid), "{kid:?}");
        }
        assert!(is_valid_kid("2026-11-22.ed25519_1"));
    }

    #[test]
    fn jwk_round_trips_for_both_algorithms() {
        for key in [
            SigningKey::ed25519_from_seed("ed", &[7; 32]).unwrap(),
            SigningKey::es256_from_secret("ec", &[7; 32]).unwrap(),
        ] {
            let parsed = VerifyingKey::from_jwk(&key.public_jwk()).unwrap().unwrap();
            assert_eq!(parsed.algorithm(), key.algorithm());
            let signature = key.sign(b"message");
            assert!(parsed.verify(b"message", &signature));
            assert!(!parsed.verify(b"massage", &signature));
        }
    }

    #[test]
    fn jwk_declaring_another_algorithm_than_its_key_type_is_refused() {
        let mut jwk = SigningKey::ed25519_from_seed("ed", &[7; 32])
            .unwrap()
            .public_jwk();
        jwk.alg = Some("HS256".into());
        assert!(matches!(
            VerifyingKey::from_jwk(&jwk),
            Err(KeyError::AlgorithmMismatch { .. })
        ));
    }

    #[test]
    fn foreign_key_types_are_skipped_not_trusted() {
        let jwk = Jwk {
            kty: "RSA".into(),
            crv: String::new(),
            x: String::new(),
            y: None,
            kid: "rsa".into(),
            alg: None,
            key_use: None,
        };
        assert!(VerifyingKey::from_jwk(&jwk).unwrap().is_none());
    }
}
