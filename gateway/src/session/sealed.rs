//! Session ids that carry their own mapping: any replica holding the key can read them.
//!
//! An id is `base64url(nonce ‖ XChaCha20-Poly1305(opened_at ‖ client ‖ upstream session id))`
//! (`client`: one byte of what the agent's client declared it can do), with the
//! upstream's name and the principal (issuer, user, agent) as associated data. So the id says
//! which upstream session it stands for to whoever holds the key and to no one else, and it
//! opens only for the principal and upstream it was minted for: presented with another
//! token, or at another upstream, the tag fails and the id is unknown. The 24-byte random
//! nonce is also the session's handle, the name under which replicas share what the id
//! cannot carry (whether it has ended, when it was last used, a fleet's member sessions).
//!
//! Keys rotate as a list: the first seals new ids, every key opens. A replaced key stays
//! listed for the longest session lifetime, then goes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::{ClientAbilities, Principal};
use crate::config::SessionKey;

/// Bytes of the nonce at the start of an id.
const NONCE_LEN: usize = 24;
/// Characters of the handle: the nonce's base64url, the first characters of the id.
pub(crate) const HANDLE_LEN: usize = 32;
/// Longest upstream session id the gateway carries (the MCP specification sets no bound; the
/// SDKs mint UUIDs or 32 random bytes).
pub(crate) const MAX_UPSTREAM_ID: usize = 512;
/// Versions the associated data, so a later format can never open as this one.
const CONTEXT: &[u8] = b"portcullis session v2";

/// What an id carries, once opened.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Opened<'a> {
    /// The session's handle (the start of the id).
    pub(crate) handle: &'a str,
    /// When the session was opened, in Unix seconds.
    pub(crate) opened_at: i64,
    /// What the agent's client declared at `initialize`.
    pub(crate) client: ClientAbilities,
    /// The upstream's session id; empty for a fleet's own session.
    pub(crate) upstream_id: String,
}

/// The keys that seal and open session ids.
pub(crate) struct Sealer {
    /// The first seals; all open.
    ciphers: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl Sealer {
    /// A sealer over `keys`, the first of which seals. There is at least one key.
    pub(crate) fn new(keys: &[SessionKey]) -> Self {
        assert!(!keys.is_empty(), "validated: at least one session key");
        Self {
            ciphers: keys
                .iter()
                .map(|key| XChaCha20Poly1305::new(&(*key.bytes()).into()))
                .collect(),
        }
    }

    /// The id of a session `upstream` opened as `upstream_id` for `principal` at `opened_at`.
    pub(crate) fn seal(
        &self,
        upstream: &str,
        principal: &Principal,
        opened_at: i64,
        client: ClientAbilities,
        upstream_id: &str,
    ) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let mut plaintext = Vec::with_capacity(9 + upstream_id.len());
        plaintext.extend_from_slice(&opened_at.to_be_bytes());
        plaintext.push(client.to_byte());
        plaintext.extend_from_slice(upstream_id.as_bytes());
        let aad = associated_data(upstream, principal);
        let sealed = self.ciphers[0]
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message of this size");
        let mut id = Vec::with_capacity(NONCE_LEN + sealed.len());
        id.extend_from_slice(&nonce);
        id.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(id)
    }

    /// What `id` carries, if one of the keys sealed it for this upstream and principal.
    pub(crate) fn open<'a>(
        &self,
        id: &'a str,
        upstream: &str,
        principal: &Principal,
    ) -> Option<Opened<'a>> {
        // The longest id a valid session can have: refuse anything longer unread.
        const MAX_ID: usize = (NONCE_LEN + 9 + MAX_UPSTREAM_ID + 16).div_ceil(3) * 4;
        if id.len() > MAX_ID || !id.is_char_boundary(HANDLE_LEN) {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(id).ok()?;
        // Ciphertext is at least the 8-byte time, the client byte and the 16-byte tag.
        if bytes.len() < NONCE_LEN + 9 + 16 {
            return None;
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let aad = associated_data(upstream, principal);
        let plaintext = self.ciphers.iter().find_map(|cipher| {
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .ok()
        })?;
        let (time, rest) = plaintext.split_at(8);
        let (client, upstream_id) = rest.split_first()?;
        Some(Opened {
            handle: &id[..HANDLE_LEN],
            opened_at: i64::from_be_bytes(time.try_into().expect("split at 8")),
            client: ClientAbilities::from_byte(*client),
            upstream_id: String::from_utf8(upstream_id.to_vec()).ok()?,
        })
    }
}

/// What an id is bound to: each part length-prefixed, so no two bindings read alike.
fn associated_data(upstream: &str, principal: &Principal) -> Vec<u8> {
    let parts = [
        upstream,
        &principal.issuer,
        &principal.subject,
        &principal.client_id,
    ];
    let mut aad =
        Vec::with_capacity(CONTEXT.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>());
    aad.extend_from_slice(CONTEXT);
    for part in parts {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        aad.extend_from_slice(&len.to_be_bytes());
        aad.extend_from_slice(part.as_bytes());
    }
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(subject: &str, client_id: &str) -> Principal {
        Principal {
            issuer: "https://issuer".into(),
            subject: subject.into(),
            client_id: client_id.into(),
        }
    }

    #[test]
    fn an_id_opens_only_for_its_upstream_and_principal() {
        let sealer = Sealer::new(&[SessionKey::generate()]);
        let alice = principal("alice", "agent-a");
        let url = ClientAbilities {
            url_elicitation: true,
        };
        let id = sealer.seal("mail", &alice, 1_700_000_000, url, "upstream-1");
        assert!(!id.contains("upstream-1"));
        let opened = sealer.open(&id, "mail", &alice).expect("opens");
        assert_eq!(opened.upstream_id, "upstream-1");
        assert_eq!(opened.opened_at, 1_700_000_000);
        assert_eq!(opened.client, url);
        assert_eq!(opened.handle, &id[..HANDLE_LEN]);
        assert_eq!(sealer.open(&id, "expenses", &alice), None);
        assert_eq!(
            sealer.open(&id, "mail", &principal("mallory", "agent-a")),
            None
        );
        assert_eq!(
            sealer.open(&id, "mail", &principal("alice", "agent-b")),
            None
        );
        // Parts run together differently are another binding.
        assert_eq!(
            sealer.open(&id, "mai", &principal("lalice", "agent-a")),
            None
        );
    }

    #[test]
    fn rotated_keys_open_old_ids_and_seal_with_the_first() {
        let (old, new) = (SessionKey::generate(), SessionKey::generate());
        let alice = principal("alice", "agent-a");
        let old_id = Sealer::new(std::slice::from_ref(&old)).seal(
            "mail",
            &alice,
            1,
            ClientAbilities::default(),
            "u",
        );
        let rotated = Sealer::new(&[new.clone(), old]);
        assert!(rotated.open(&old_id, "mail", &alice).is_some());
        let new_id = rotated.seal("mail", &alice, 2, ClientAbilities::default(), "u");
        assert!(Sealer::new(&[new]).open(&new_id, "mail", &alice).is_some());
        let other = Sealer::new(&[SessionKey::generate()]);
        assert_eq!(other.open(&new_id, "mail", &alice), None);
    }

    #[test]
    fn a_changed_id_is_unknown() {
        let sealer = Sealer::new(&[SessionKey::generate()]);
        let alice = principal("alice", "agent-a");
        let id = sealer.seal("mail", &alice, 1, ClientAbilities::default(), "upstream-1");
        for position in [0, HANDLE_LEN, id.len() - 1] {
            let mut bytes = id.clone().into_bytes();
            bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            assert_eq!(sealer.open(&changed, "mail", &alice), None, "at {position}");
        }
        for hostile in ["", "x", "é", &"A".repeat(10_000), &id[..id.len() - 2]] {
            assert_eq!(sealer.open(hostile, "mail", &alice), None);
        }
    }
}
