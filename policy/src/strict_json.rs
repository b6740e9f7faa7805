//! JSON parsing that refuses documents which could be read two ways.
//!
//! RFC 8259 leaves the meaning of duplicate object keys undefined: `serde_json` keeps the last one,
//! other parsers keep the first. A token or JSON-RPC body such as `{"amount": 1, "amount": 900}`
//! would then be judged by one reader and acted on by another. Every attacker-controlled JSON
//! document that Portcullis makes a decision on goes through [`from_slice`], which builds the same
//! [`serde_json::Value`] as `serde_json::from_slice` in one pass but fails on the first repeated
//! key at any depth.

use std::cell::Cell;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a document was refused by [`from_slice`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StrictJsonError {
    /// The same key appears twice in one object.
    #[error("duplicate key {key:?} in a JSON object")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },
    /// The bytes are not one well-formed JSON document.
    #[error("malformed JSON: {0}")]
    Syntax(String),
}

/// Parses one JSON document, refusing duplicate object keys at any depth.
pub fn from_slice(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    // The visitor records the repeated key here, so a duplicate can be told apart from a syntax
    // error without reading serde_json's error text.
    let duplicate = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = StrictValue {
        duplicate: &duplicate,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    value.map_err(|e| match duplicate.take() {
        Some(key) => StrictJsonError::DuplicateKey { key },
        None => StrictJsonError::Syntax(e.to_string()),
    })
}

/// Parses one JSON document into `T`, refusing duplicate object keys at any depth.
pub fn from_slice_to<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StrictJsonError> {
    let value = from_slice(bytes)?;
    T::deserialize(value).map_err(|e| StrictJsonError::Syntax(e.to_string()))
}

#[derive(Clone, Copy)]
struct StrictValue<'a> {
    duplicate: &'a Cell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let message = format!("duplicate key {key:?}");
                self.duplicate.set(Some(key));
                return Err(de::Error::custom(message));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serde_json_parses() {
        let text = br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":"\u00e9"}"#;
        let strict = from_slice(text).unwrap();
        let plain: Value = serde_json::from_slice(text).unwrap();
        assert_eq!(strict, plain);
    }

    #[test]
    fn duplicate_top_level_key_is_refused() {
        let err = from_slice(br#"{"amount":1,"amount":900}"#).unwrap_err();
        assert!(matches!(err, StrictJsonError::DuplicateKey { key } if key == "amount"));
    }

    #[test]
    fn duplicate_nested_key_is_refused() {
        let err = from_slice(br#"{"params":{"arguments":{"a":1,"b":2,"a":3}}}"#).unwrap_err();
        assert!(matches!(err, StrictJsonError::DuplicateKey { key } if key == "a"));
    }

    #[test]
    fn duplicate_key_inside_array_is_refused() {
        let err = from_slice(br#"[{"x":1},{"y":1,"y":2}]"#).unwrap_err();
        assert!(matches!(err, StrictJsonError::DuplicateKey { key } if key == "y"));
    }

    #[test]
    fn escaped_spelling_of_the_same_key_is_a_duplicate() {
        let err = from_slice(br#"{"amount":1,"\u0061mount":900}"#).unwrap_err();
        assert!(matches!(err, StrictJsonError::DuplicateKey { .. }));
    }

    #[test]
    fn trailing_garbage_is_refused() {
        assert!(matches!(
            from_slice(br#"{"a":1} {"a":2}"#),
            Err(StrictJsonError::Syntax(_))
        ));
    }
}
