//! Signing keys: made on first start, sealed at rest, published as a JWKS.
//!
//! Private keys never touch the database in the clear. They are sealed with XChaCha20-Poly1305
//! under a key derived (HKDF-SHA256) from the key-encryption secret, with the `kid` as
//! associated data so a sealed key cannot be swapped onto another row. The secret comes from
//! the operator (`PORTCULLIS_KEY_ENCRYPTION_SECRET`); without one, a development secret is
//! generated into the data directory next to the database, which protects nothing against
//! someone who can read that directory, and the issuer says so loudly at start.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use portcullis_policy::{
    Algorithm, JwkSet, KeySet, SigningKey, VerifiedToken, Verifier, VerifyError,
};
use sha2::Sha256;
use sqlx::Row;

use crate::audit::AnchorKey;
use crate::db::Database;
use crate::secret::{random_seed, random_token};

const SEALED_PREFIX: &str = "v1.";
const DEV_SECRET_FILE: &str = "key-encryption.secret";

/// Why keys could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// A sealed key does not open with this secret.
    #[error(
        "cannot decrypt signing key {kid:?}: is the key-encryption secret the one it was sealed with?"
    )]
    Unseal {
        /// The key that failed.
        kid: String,
    },
    /// A stored key row is not usable.
    #[error("stored signing key {kid:?} is corrupt: {reason}")]
    Corrupt {
        /// The key.
        kid: String,
        /// What is wrong.
        reason: String,
    },
    /// The key-encryption secret is too short to be one.
    #[error("the key-encryption secret must be at least 32 characters of high-entropy text")]
    WeakSecret,
    /// Reading or writing the development secret failed.
    #[error("development key-encryption secret at {path}: {source}")]
    DevSecret {
        /// Its path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// The key that seals signing keys at rest.
#[derive(Clone)]
pub struct KeyEncryption {
    cipher: XChaCha20Poly1305,
    /// Seals the tokens of upstreams' own authorization servers (`upstream_links`): a key of
    /// its own, so a sealed token can never be opened as a signing key or the other way.
    tokens: XChaCha20Poly1305,
    /// Authenticates the audit log's anchor once old events are pruned.
    anchor_key: [u8; 32],
}

impl std::fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryption(..)")
    }
}

impl KeyEncryption {
    /// Derives the sealing key from an operator-supplied secret.
    pub fn from_secret(secret: &str) -> Result<Self, KeyStoreError> {
        if secret.trim().len() < 32 {
            return Err(KeyStoreError::WeakSecret);
        }
        let hkdf = Hkdf::<Sha256>::new(Some(b"portcullis-issuer/kek/v1"), secret.trim().as_bytes());
        let (mut key, mut anchor_key, mut tokens) = ([0u8; 32], [0u8; 32], [0u8; 32]);
        hkdf.expand(b"signing-key-sealing", &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hkdf.expand(b"upstream-token-sealing", &mut tokens)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        hkdf.expand(b"audit-anchor", &mut anchor_key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
            tokens: XChaCha20Poly1305::new(&tokens.into()),
            anchor_key,
        })
    }

    /// Reads the development secret from `data_dir`, creating it (mode 0600) on first use.
    pub fn development(data_dir: &Path) -> Result<Self, KeyStoreError> {
        let path = data_dir.join(DEV_SECRET_FILE);
        let io = |source| KeyStoreError::DevSecret {
            path: path.display().to_string(),
            source,
        };
        let secret = match std::fs::read_to_string(&path) {
            Ok(secret) => secret,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let secret = random_token(32);
                write_private(&path, &secret).map_err(io)?;
                secret
            }
            Err(e) => return Err(io(e)),
        };
        Self::from_secret(&secret)
    }

    /// The key that authenticates the audit log's anchor once old events are pruned.
    pub fn anchor_key(&self) -> AnchorKey {
        AnchorKey::new(self.anchor_key)
    }

    fn seal(&self, kid: &str, secret: &[u8; 32]) -> String {
        seal_with(&self.cipher, kid, secret)
    }

    fn unseal(&self, kid: &str, sealed: &str) -> Result<[u8; 32], KeyStoreError> {
        let corrupt = |reason: &str| KeyStoreError::Corrupt {
            kid: kid.to_owned(),
            reason: reason.to_owned(),
        };
        let bytes = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(|| corrupt("not a v1 sealed key"))?;
        if bytes.len() < 24 {
            return Err(corrupt("too short"));
        }
        let plain = open_with(&self.cipher, kid, &bytes).ok_or_else(|| KeyStoreError::Unseal {
            kid: kid.to_owned(),
        })?;
        plain
            .try_into()
            .map_err(|_| corrupt("sealed secret is not 32 bytes"))
    }

    /// Seals an upstream's token (or client secret) for storage, bound to `aad` (what it
    /// belongs to), so a sealed value moved to another row does not open.
    pub(crate) fn seal_token(&self, aad: &str, token: &str) -> String {
        seal_with(&self.tokens, aad, token.as_bytes())
    }

    /// Opens what [`Self::seal_token`] sealed for `aad`; `None` if it was not, or was
    /// tampered with.
    pub(crate) fn open_token(&self, aad: &str, sealed: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed.strip_prefix(SEALED_PREFIX)?).ok()?;
        String::from_utf8(open_with(&self.tokens, aad, &bytes)?).ok()
    }
}

/// `v1.` and base64 of a random 24-byte nonce and the XChaCha20-Poly1305 ciphertext of `msg`
/// with `aad`.
fn seal_with(cipher: &XChaCha20Poly1305, aad: &str, msg: &[u8]) -> String {
    let nonce_bytes: [u8; 24] = random_seed()[..24].try_into().expect("24 of 32 bytes");
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce_bytes),
            Payload {
                msg,
                aad: aad.as_bytes(),
            },
        )
        .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory sizes");
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&sealed);
    format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
}

/// The plaintext of nonce ‖ ciphertext, if it opens with `aad`.
fn open_with(cipher: &XChaCha20Poly1305, aad: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 24 {
        return None;
    }
    let (nonce, ciphertext) = bytes.split_at(24);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: aad.as_bytes(),
            },
        )
        .ok()
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

/// The issuer's keys: the one that signs, and every published one.
#[derive(Debug, Clone)]
pub struct Keyring {
    active: SigningKey,
    jwks: JwkSet,
    verifier: Verifier,
}

impl Keyring {
    /// The key that signs new tokens.
    pub fn active(&self) -> &SigningKey {
        &self.active
    }

    /// Every published public key.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// A verifier for this issuer's own tokens.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// One of this issuer's tokens for any audience, verified as of `now` or, if it has expired,
    /// as of just before it did. For operators only (showing a token, revoking one by its JWT):
    /// an expired token is still worth explaining and proving authentic, never worth accepting.
    pub fn dangerous_verify_even_if_expired(
        &self,
        token: &str,
        now: i64,
    ) -> Result<VerifiedToken, VerifyError> {
        match self.verifier.dangerous_verify_any_audience(token, now) {
            Err(VerifyError::Expired { exp, .. }) => {
                self.verifier.dangerous_verify_any_audience(token, exp - 1)
            }
            other => other,
        }
    }
}

/// Loads every stored key, creating and storing an Ed25519 key first if there is none.
pub async fn load_or_create(
    db: &Database,
    sealing: &KeyEncryption,
    issuer: &str,
    now: i64,
) -> Result<Keyring, KeyStoreError> {
    if let Some(keyring) = load(db, sealing, issuer).await? {
        return Ok(keyring);
    }
    let kid = format!("ed25519-{}", random_token(9));
    let key = SigningKey::ed25519_from_seed(&kid, &random_seed())
        .expect("generated kid is a plain identifier");
    let jwk = serde_json::to_string(&key.public_jwk()).expect("a JWK serialises");
    // Two processes starting on an empty database race here; the primary key makes one win
    // and the loser simply loads the winner's key below.
    sqlx::query(
        "INSERT INTO signing_keys (kid, alg, public_jwk, sealed_secret, created_at, active)
         VALUES ($1, $2, $3, $4, $5, 1)",
    )
    .bind(&kid)
    .bind(key.algorithm().as_str())
    .bind(&jwk)
    .bind(sealing.seal(&kid, &key.secret_bytes()))
    .bind(now)
    .execute(db.pool())
    .await?;
    tracing::info!(kid, "created a new signing key");
    load(db, sealing, issuer)
        .await?
        .ok_or_else(|| KeyStoreError::Corrupt {
            kid,
            reason: "the key just stored cannot be read back".into(),
        })
}

async fn load(
    db: &Database,
    sealing: &KeyEncryption,
    issuer: &str,
) -> Result<Option<Keyring>, KeyStoreError> {
    let rows = sqlx::query(
        "SELECT kid, alg, public_jwk, sealed_secret, active FROM signing_keys
         ORDER BY active DESC, created_at DESC, kid",
    )
    .fetch_all(db.pool())
    .await?;
    let mut active = None;
    let mut jwks = JwkSet::default();
    for row in rows {
        let kid: String = row.try_get("kid")?;
        let corrupt = |reason: String| KeyStoreError::Corrupt {
            kid: kid.clone(),
            reason,
        };
        // The published key is derived from the sealed secret, never read from the row: with
        // write access to the database alone, nobody can slip in a public key of their own.
        let alg: String = row.try_get("alg")?;
        let algorithm =
            Algorithm::from_name(&alg).ok_or_else(|| corrupt(format!("unknown alg {alg}")))?;
        let secret = sealing.unseal(&kid, row.try_get("sealed_secret")?)?;
        let key = SigningKey::from_secret(&kid, algorithm, &secret)
            .map_err(|e| corrupt(e.to_string()))?;
        let stored: portcullis_policy::Jwk =
            serde_json::from_str(row.try_get::<&str, _>("public_jwk")?)
                .map_err(|e| corrupt(e.to_string()))?;
        if stored != key.public_jwk() {
            return Err(corrupt(
                "the stored public key does not match the sealed secret".into(),
            ));
        }
        jwks.keys.push(stored);
        if active.is_none() && row.try_get::<i64, _>("active")? == 1 {
            active = Some(key);
        }
    }
    let Some(active) = active else {
        return Ok(None);
    };
    let keys = KeySet::from_jwks(&jwks).map_err(|e| KeyStoreError::Corrupt {
        kid: active.kid().to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Some(Keyring {
        verifier: Verifier::new(issuer, keys),
        active,
        jwks,
    }))
}

/// How often a running issuer looks for keys rotated by another process.
const RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Holds `keyring` for the running issuer and reloads it when another process (the CLI, a
/// replica) rotates or prunes keys.
pub fn watch(
    db: Database,
    sealing: KeyEncryption,
    issuer: String,
    keyring: Keyring,
) -> Arc<ArcSwap<Keyring>> {
    let shared = Arc::new(ArcSwap::from_pointee(keyring));
    let weak = Arc::downgrade(&shared);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(RELOAD_INTERVAL).await;
            let Some(shared) = weak.upgrade() else { return };
            match load(&db, &sealing, &issuer).await {
                Ok(Some(fresh)) => {
                    let current = shared.load();
                    if fresh.active.kid() != current.active.kid() || fresh.jwks != current.jwks {
                        tracing::info!(kid = fresh.active.kid(), "signing keys changed; reloaded");
                        shared.store(Arc::new(fresh));
                    }
                }
                Ok(None) => {
                    tracing::error!("no active signing key in the database; keeping the loaded one")
                }
                Err(e) => tracing::warn!("reloading signing keys failed: {e}"),
            }
        }
    });
    shared
}

/// Makes a new Ed25519 key the active one; the previous keys stay published (for tokens they
/// signed) until pruned. Returns the new key's id.
pub async fn rotate(
    db: &Database,
    sealing: &KeyEncryption,
    now: i64,
) -> Result<String, KeyStoreError> {
    let kid = format!("ed25519-{}", random_token(9));
    let key = SigningKey::ed25519_from_seed(&kid, &random_seed()).expect("generated kid is valid");
    let jwk = serde_json::to_string(&key.public_jwk()).expect("a JWK serialises");
    let sealed = sealing.seal(&kid, &key.secret_bytes());
    let alg = key.algorithm().as_str();
    let new_kid = kid.clone();
    db.write(|tx| {
        let (kid, jwk, sealed) = (kid.clone(), jwk.clone(), sealed.clone());
        Box::pin(async move {
            sqlx::query("UPDATE signing_keys SET active = 0, retired_at = $1 WHERE active = 1")
                .bind(now)
                .execute(&mut **tx)
                .await?;
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, public_jwk, sealed_secret, created_at, active)
                 VALUES ($1, $2, $3, $4, $5, 1)",
            )
            .bind(&kid)
            .bind(alg)
            .bind(&jwk)
            .bind(&sealed)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            crate::audit::append(tx, "keys.rotated", serde_json::json!({"kid": kid}), now).await?;
            Ok(())
        })
    })
    .await?;
    Ok(new_kid)
}

/// Deletes retired keys that stopped signing before `retired_before`: no token they signed can
/// still be valid. Returns the ids removed.
pub async fn prune(
    db: &Database,
    retired_before: i64,
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    db.write(|tx| {
        Box::pin(async move {
            let kids: Vec<String> = sqlx::query_scalar(
                "SELECT kid FROM signing_keys WHERE active = 0 AND retired_at < $1 ORDER BY kid",
            )
            .bind(retired_before)
            .fetch_all(&mut **tx)
            .await?;
            sqlx::query("DELETE FROM signing_keys WHERE active = 0 AND retired_at < $1")
                .bind(retired_before)
                .execute(&mut **tx)
                .await?;
            if !kids.is_empty() {
                crate::audit::append(tx, "keys.pruned", serde_json::json!({"kids": kids}), now)
                    .await?;
            }
            Ok(kids)
        })
    })
    .await
}

/// One stored key, for `keys list`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// Key id.
    pub kid: String,
    /// Algorithm.
    pub alg: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Whether it signs new tokens.
    pub active: bool,
    /// When it stopped signing, Unix seconds.
    pub retired_at: Option<i64>,
}

/// Lists stored keys, newest first, without their secrets.
pub async fn list(db: &Database) -> Result<Vec<KeyInfo>, sqlx::Error> {
    sqlx::query(
        "SELECT kid, alg, created_at, active, retired_at FROM signing_keys ORDER BY created_at DESC",
    )
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|row| {
            Ok(KeyInfo {
                kid: row.try_get("kid")?,
                alg: row.try_get("alg")?,
                created_at: row.try_get("created_at")?,
                active: row.try_get::<i64, _>("active")? == 1,
                retired_at: row.try_get("retired_at")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealing() -> KeyEncryption {
        KeyEncryption::from_secret("unit-test-key-encryption-secret-0123456789").unwrap()
    }

    #[test]
    fn an_upstream_token_opens_only_for_its_person_and_resource_and_never_as_a_key() {
        let sealed = sealing().seal_token("alice\nhttps://gw/mcp/notes", "at-123");
        assert_eq!(
            sealing()
                .open_token("alice\nhttps://gw/mcp/notes", &sealed)
                .as_deref(),
            Some("at-123")
        );
        // The same sealed value in Bob's row, or another upstream's, does not open.
        assert!(
            sealing()
                .open_token("bob\nhttps://gw/mcp/notes", &sealed)
                .is_none()
        );
        assert!(
            sealing()
                .open_token("alice\nhttps://gw/mcp/mail", &sealed)
                .is_none()
        );
        // Tokens and signing keys are sealed under different keys.
        let key = sealing().seal("kid-a", &[7; 32]);
        assert!(sealing().open_token("kid-a", &key).is_none());
        let other = KeyEncryption::from_secret("another-key-encryption-secret-0123456789").unwrap();
        assert!(
            other
                .open_token("alice\nhttps://gw/mcp/notes", &sealed)
                .is_none()
        );
    }

    #[test]
    fn a_sealed_key_opens_only_under_its_own_kid() {
        let sealed = sealing().seal("kid-a", &[7; 32]);
        assert_eq!(sealing().unseal("kid-a", &sealed).unwrap(), [7; 32]);
        assert!(matches!(
            sealing().unseal("kid-b", &sealed),
            Err(KeyStoreError::Unseal { .. })
        ));
    }

    #[test]
    fn the_sealed_form_does_not_contain_the_secret() {
        let secret = [0x5a; 32];
        let sealed = sealing().seal("kid", &secret);
        let bytes = STANDARD
            .decode(sealed.strip_prefix("v1.").unwrap())
            .unwrap();
        assert!(!bytes.windows(8).any(|w| w == &secret[..8]));
    }

    #[test]
    fn a_short_key_encryption_secret_is_refused() {
        assert!(matches!(
            KeyEncryption::from_secret("hunter2"),
            Err(KeyStoreError::WeakSecret)
        ));
    }
}
