//! `strict_json::from_slice` on arbitrary bytes, against `serde_json`.
//!
//! Never panics; whatever it accepts, `serde_json` accepts and reads as the same value; it
//! never accepts a document with a repeated key (counted by an independent visitor: more
//! members in the text than in the value read means a key was repeated); and it refuses a
//! document `serde_json` reads only for a repeated key.

#![no_main]

use std::cell::Cell;

use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::MAX_INPUT;
use portcullis_policy::strict_json::{self, StrictJsonError};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let strict = strict_json::from_slice(data);
    let plain = serde_json::from_slice::<Value>(data);
    let repeated = plain
        .as_ref()
        .ok()
        .map(|value| members_in_text(data) != members_in_value(value));
    match (&strict, &plain) {
        (Ok(strict), Ok(plain)) => {
            assert_eq!(strict, plain, "read differently from serde_json");
            assert_eq!(repeated, Some(false), "a repeated key was accepted");
        }
        (Ok(_), Err(e)) => panic!("accepted what serde_json refuses: {e}"),
        (Err(e), Ok(_)) => {
            assert_eq!(
                repeated,
                Some(true),
                "refused a document serde_json reads: {e}"
            );
            assert!(
                matches!(e, StrictJsonError::DuplicateKey { .. }),
                "a repeated key reported as {e:?}"
            );
        }
        (Err(_), Err(_)) => {}
    }
});

/// Every object member written in `text`, repeated keys included.
fn members_in_text(text: &[u8]) -> usize {
    let count = Cell::new(0);
    let mut de = serde_json::Deserializer::from_slice(text);
    Count(&count)
        .deserialize(&mut de)
        .expect("serde_json read it once already");
    count.get()
}

/// Every object member of `value`: repeated keys have collapsed into one.
fn members_in_value(value: &Value) -> usize {
    match value {
        Value::Object(map) => map.len() + map.values().map(members_in_value).sum::<usize>(),
        Value::Array(items) => items.iter().map(members_in_value).sum(),
        _ => 0,
    }
}

#[derive(Clone, Copy)]
struct Count<'a>(&'a Cell<usize>);

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            self.0.set(self.0.get() + 1);
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}
