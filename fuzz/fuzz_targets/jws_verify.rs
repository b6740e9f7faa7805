//! The policy verifier on compact JWS text, with the golden key set.
//!
//! Never panics, and accepts nothing the golden keys did not sign. The first byte picks a
//! mode:
//! - raw (0): the rest is the token text; an accepted token's signature must verify under
//!   the key its `kid` names, checked with `ed25519-dalek` / `p256` directly;
//! - signed (1 = Ed25519, 2 = P-256): the rest is `header 0xFF payload 0xFF edits`; the target
//!   signs `header.payload` itself (any bytes: the fuzzer mutates claims and headers of a
//!   really signed token), then applies the edits (4 bytes each: op, position, byte) to the
//!   token text. An accepted token must sign the same bytes the target signed, and with
//!   Ed25519 (deterministic, `verify_strict`) be that token byte for byte.

#![no_main]

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{
    EC_KID, MAX_INPUT, expected, raw_verifies, sign_raw, signing_input, verifier,
};
use portcullis_policy::Verifier;
use serde_json::Value;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(verifier);

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => raw(&String::from_utf8_lossy(rest)),
        m => signed(rest, m == 2),
    }
});

fn raw(token: &str) {
    let Ok(verified) = VERIFIER.verify(token, &expected()) else {
        return;
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("accepted a token that is not three parts: {token:?}");
    };
    let input = format!("{header}.{payload}");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let ec = header["kid"] == EC_KID;
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("accepted base64");
    assert!(
        raw_verifies(input.as_bytes(), &signature, ec),
        "accepted a signature the key did not make: {token:?}"
    );
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["sub"], verified.claims().subject.as_str());
}

fn signed(rest: &[u8], ec: bool) {
    let mut parts = rest.splitn(3, |b| *b == 0xFF);
    let header = parts.next().unwrap_or_default();
    let payload = parts.next().unwrap_or_default();
    let edits = parts.next().unwrap_or_default();
    let signed = sign_raw(header, payload, ec);
    let mut token = signed.clone().into_bytes();
    for edit in edits.chunks_exact(4) {
        let at = usize::from(u16::from_be_bytes([edit[1], edit[2]])) % (token.len() + 1);
        match edit[0] % 4 {
            0 if at < token.len() => token[at] = edit[3],
            1 if at < token.len() => {
                token.remove(at);
            }
            2 => token.insert(at, edit[3]),
            3 => token.truncate(at),
            _ => {}
        }
    }
    let Ok(token) = String::from_utf8(token) else {
        return;
    };
    if VERIFIER.verify(&token, &expected()).is_err() {
        return;
    }
    let input = signing_input(header, payload);
    let (accepted_input, _) = token.rsplit_once('.').expect("accepted three parts");
    assert_eq!(
        accepted_input, input,
        "accepted a token over bytes that were never signed"
    );
    if !ec {
        assert_eq!(token, signed, "accepted another spelling of a signed token");
    }
}
