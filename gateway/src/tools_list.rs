//! Filtering list results (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`) down to what a token allows.
//!
//! Only the `tools` array is touched: every other member of the message and every kept tool
//! object are copied byte for byte (`RawValue`), so schemas, annotations and `_meta` reach the
//! client exactly as the upstream wrote them, and parsing costs only what the decision needs
//! (each tool's `name`). The filter fails closed: a message it cannot read with certainty
//! (duplicate keys, a tool without a string name) is not passed on.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A message that looked like a tools list but could not be read with certainty.
#[derive(Debug, thiserror::Error)]
#[error("unfilterable tools/list result: {0}")]
pub struct FilterError(String);

/// A JSON object whose member values are kept as raw text, in order, refusing duplicate keys.
struct RawObject<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for RawObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members: Vec<(String, &'de RawValue)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    members.push((key, value));
                }
                Ok(RawObject(members))
            }
        }
        deserializer.deserialize_map(V)
    }
}

impl Serialize for RawObject<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'a> RawObject<'a> {
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

fn read<'a, T: Deserialize<'a>>(raw: &'a str, what: &str) -> Result<T, FilterError> {
    serde_json::from_str(raw).map_err(|e| FilterError(format!("{what}: {e}")))
}

/// The lists a result can carry, and the member that names each entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `tools`, by `name`.
    Tools,
    /// `resources`, by `uri`.
    Resources,
    /// `resourceTemplates`, by `uriTemplate` (judged as the literal template).
    ResourceTemplates,
    /// `prompts`, by `name`.
    Prompts,
}

impl ListKind {
    const ALL: [ListKind; 4] = [
        ListKind::Tools,
        ListKind::Resources,
        ListKind::ResourceTemplates,
        ListKind::Prompts,
    ];

    fn keys(self) -> (&'static str, &'static str) {
        match self {
            ListKind::Tools => ("tools", "name"),
            ListKind::Resources => ("resources", "uri"),
            ListKind::ResourceTemplates => ("resourceTemplates", "uriTemplate"),
            ListKind::Prompts => ("prompts", "name"),
        }
    }
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    uri: Option<String>,
    #[serde(default, rename = "uriTemplate")]
    uri_template: Option<String>,
}

impl Entry {
    fn key(&self, kind: ListKind) -> Option<&str> {
        match kind {
            ListKind::Tools | ListKind::Prompts => self.name.as_deref(),
            ListKind::Resources => self.uri.as_deref(),
            ListKind::ResourceTemplates => self.uri_template.as_deref(),
        }
    }
}

/// If `message` is a JSON-RPC result holding one of the lists, or a batch of responses with
/// such results, returns it with only the entries for which `visible(kind, name, entry)`
/// holds; otherwise `Ok(None)` (nothing to filter).
pub fn filter(
    message: &str,
    mut visible: impl FnMut(ListKind, &str, &RawValue) -> bool,
) -> Result<Option<String>, FilterError> {
    if !message.trim_start().starts_with('[') {
        return filter_one(message, &mut visible);
    }
    let elements: Vec<&RawValue> = read(message, "batch")?;
    let mut filtered = Vec::new();
    for element in &elements {
        filtered.push(filter_one(element.get(), &mut visible)?);
    }
    if filtered.iter().all(Option::is_none) {
        return Ok(None);
    }
    let rebuilt: Vec<Box<RawValue>> = elements
        .iter()
        .zip(filtered)
        .map(|(original, filtered)| match filtered {
            Some(text) => RawValue::from_string(text),
            None => Ok((*original).to_owned()),
        })
        .collect::<Result<_, _>>()
        .map_err(|e| FilterError(e.to_string()))?;
    serde_json::to_string(&rebuilt)
        .map(Some)
        .map_err(|e| FilterError(e.to_string()))
}

fn filter_one(
    message: &str,
    visible: &mut impl FnMut(ListKind, &str, &RawValue) -> bool,
) -> Result<Option<String>, FilterError> {
    // Most messages on a stream are not lists; skip them without parsing. A key can only be
    // spelled differently with a \u escape, so a message with one is always parsed.
    let maybe_list = [
        "\"tools\"",
        "\"resources\"",
        "\"resourceTemplates\"",
        "\"prompts\"",
        "\\u",
    ]
    .iter()
    .any(|needle| message.contains(needle));
    if !maybe_list {
        return Ok(None);
    }
    let mut top: RawObject<'_> = read(message, "message")?;
    let Some(result) = top.get("result") else {
        return Ok(None);
    };
    if !result.get().trim_start().starts_with('{') {
        return Ok(None);
    }
    let mut result: RawObject<'_> = read(result.get(), "result")?;
    let Some(kind) = ListKind::ALL
        .into_iter()
        .find(|kind| result.get(kind.keys().0).is_some())
    else {
        return Ok(None);
    };
    let (list_key, name_key) = kind.keys();
    let entries: Vec<&RawValue> = read(result.get(list_key).expect("found above").get(), list_key)?;
    let mut kept = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed: Entry = read(entry.get(), "an entry")?;
        let name = parsed.key(kind).ok_or_else(|| {
            FilterError(format!(
                "an entry of {list_key} without a string {name_key}"
            ))
        })?;
        if visible(kind, name, entry) {
            kept.push(entry);
        }
    }
    let kept = serde_json::value::to_raw_value(&kept).map_err(|e| FilterError(e.to_string()))?;
    for (key, value) in &mut result.0 {
        if key == list_key {
            *value = &kept;
        }
    }
    let result =
        serde_json::value::to_raw_value(&result).map_err(|e| FilterError(e.to_string()))?;
    for (key, value) in &mut top.0 {
        if key == "result" {
            *value = &result;
        }
    }
    serde_json::to_string(&top)
        .map(Some)
        .map_err(|e| FilterError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"submit_expense","inputSchema":{"type":"object","properties":{"amount":{"type":"number"}}}},{"name":"delete_all_expenses","inputSchema":{"type":"object"}},{"name":"list_expenses","description":"List \u00e9","inputSchema":{"type":"object"}}],"nextCursor":"abc"}}"#;

    fn granted(_kind: ListKind, name: &str, _entry: &RawValue) -> bool {
        name != "delete_all_expenses"
    }

    #[test]
    fn lists_inside_a_batch_response_are_filtered_too() {
        let batch = format!(r#"[{{"jsonrpc":"2.0","id":1,"result":{{}}}},{LIST}]"#);
        let out = filter(&batch, granted).unwrap().unwrap();
        assert!(
            out.starts_with(r#"[{"jsonrpc":"2.0","id":1,"result":{}},"#),
            "{out}"
        );
        assert!(!out.contains("delete_all_expenses"), "{out}");
        assert!(out.contains("list_expenses"));
    }

    #[test]
    fn hidden_tools_are_removed_and_everything_else_kept_verbatim() {
        let out = filter(LIST, granted).unwrap().unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"submit_expense","inputSchema":{"type":"object","properties":{"amount":{"type":"number"}}}},{"name":"list_expenses","description":"List \u00e9","inputSchema":{"type":"object"}}],"nextCursor":"abc"}}"#
        );
    }

    #[test]
    fn a_page_filtered_to_empty_keeps_its_cursor() {
        let out = filter(LIST, |_, _, _| false).unwrap().unwrap();
        assert!(out.contains(r#""tools":[],"nextCursor":"abc""#), "{out}");
    }

    #[test]
    fn messages_without_a_tools_result_are_left_alone() {
        assert!(
            filter(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#, granted)
                .unwrap()
                .is_none()
        );
        assert!(
            filter(
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"\"tools\""}}"#,
                granted
            )
            .unwrap()
            .is_none()
        );
    }

    #[test]
    fn a_tool_with_a_duplicate_name_key_is_not_passed_on() {
        let sneaky = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"list_expenses","name":"delete_all_expenses"}]}}"#;
        assert!(filter(sneaky, granted).is_err());
    }

    #[test]
    fn a_result_with_two_tools_arrays_is_not_passed_on() {
        let sneaky = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"delete_all_expenses"}]}}"#;
        assert!(filter(sneaky, granted).is_err());
    }

    #[test]
    fn an_escaped_tools_key_does_not_slip_past_the_filter() {
        let escaped = r#"{"jsonrpc":"2.0","id":1,"result":{"\u0074ools":[{"name":"delete_all_expenses"},{"name":"list_expenses"}]}}"#;
        let out = filter(escaped, granted).unwrap().unwrap();
        assert!(!out.contains("delete_all_expenses"), "{out}");
        assert!(out.contains("list_expenses"), "{out}");
    }

    #[test]
    fn resources_and_prompts_lists_are_filtered_by_uri_and_name() {
        let resources = r#"{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"a://ok","name":"ok"},{"uri":"a://secret","name":"s"}]}}"#;
        let out = filter(resources, |kind, uri, _| {
            kind == ListKind::Resources && uri == "a://ok"
        })
        .unwrap()
        .unwrap();
        assert!(
            out.contains("a://ok") && !out.contains("a://secret"),
            "{out}"
        );
        let prompts =
            r#"{"jsonrpc":"2.0","id":1,"result":{"prompts":[{"name":"p1"},{"name":"p2"}]}}"#;
        let out = filter(prompts, |kind, name, _| {
            kind == ListKind::Prompts && name == "p2"
        })
        .unwrap()
        .unwrap();
        assert!(!out.contains("p1") && out.contains("p2"), "{out}");
    }

    #[test]
    fn a_tool_without_a_name_is_not_passed_on() {
        let odd = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"title":"x"}]}}"#;
        assert!(filter(odd, granted).is_err());
    }
}
