//! Filtering list results (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`) down to what a token allows.
//!
//! Only the list is touched: every other byte of the message and every kept entry are copied
//! as the upstream wrote them (the kept entries are spliced in place of the list), so schemas,
//! annotations and `_meta` reach the client unchanged, and parsing costs only what the
//! decision needs (each entry's `name`). The filter fails closed: a message it cannot read with certainty
//! (duplicate keys, a tool without a string name) is not passed on.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A message that looked like a tools list but could not be read with certainty.
#[derive(Debug, thiserror::Error)]
#[error("unfilterable tools/list result: {0}")]
pub struct FilterError(String);

/// A duplicate-free key set: a second `"result"` or `"tools"` could be read one way here and
/// another way by the client.
fn check_unique<'de, E: serde::de::Error>(
    seen: &mut Vec<Cow<'de, str>>,
    key: Cow<'de, str>,
) -> Result<Cow<'de, str>, E> {
    if seen.contains(&key) {
        return Err(E::custom(format!("duplicate key {key:?}")));
    }
    seen.push(key.clone());
    Ok(key)
}

/// The list found in a message, its entries borrowed from the message text.
struct Found<'de> {
    kind: ListKind,
    entries: Vec<&'de RawValue>,
    /// The result's `cacheScope` (2026-07-28), if it has one.
    cache_scope: Option<&'de RawValue>,
}

/// Reads a JSON-RPC message in one pass, down to the entries of the list in its `result`.
struct Message;

impl<'de> DeserializeSeed<'de> for Message {
    type Value = Option<Found<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Message {
    type Value = Option<Found<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC message object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if check_unique(&mut seen, key)? == "result" {
                found = map.next_value_seed(ResultMember)?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// A `result`: an object that may hold one list. Any other value holds none.
struct ResultMember;

impl<'de> DeserializeSeed<'de> for ResultMember {
    type Value = Option<Found<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResultMember {
    type Value = Option<Found<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON-RPC result")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = Vec::new();
        let mut found: Option<Found<'de>> = None;
        let mut cache_scope = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let key = check_unique(&mut seen, key)?;
            if key == "cacheScope" {
                cache_scope = Some(map.next_value::<&'de RawValue>()?);
                continue;
            }
            match ListKind::ALL.into_iter().find(|kind| kind.keys().0 == key) {
                // Two lists in one result: whichever one the client reads must be filtered,
                // so a result with two is refused.
                Some(_) if found.is_some() => {
                    return Err(serde::de::Error::custom("a result with two lists"));
                }
                Some(kind) => {
                    let entries = map.next_value::<Vec<&'de RawValue>>()?;
                    found = Some(Found {
                        kind,
                        entries,
                        cache_scope: None,
                    });
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found.map(|found| Found {
            cache_scope,
            ..found
        }))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
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
    let mut deserializer = serde_json::Deserializer::from_str(message);
    let found = Message
        .deserialize(&mut deserializer)
        .and_then(|found| deserializer.end().map(|()| found))
        .map_err(|e| FilterError(format!("message: {e}")))?;
    let Some(Found {
        kind,
        entries,
        cache_scope,
    }) = found
    else {
        return Ok(None);
    };
    let (list_key, name_key) = kind.keys();
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        // An empty list: nothing to hide.
        return Ok(None);
    };
    // Splice the kept entries in place of the list: every other byte stays as it was, and the
    // message is copied once. The entries borrow from `message`, so their positions in it are
    // known; in valid JSON only whitespace lies between `[` and the first entry, and between
    // the last entry and `]`.
    let offset = |part: &str| {
        (part.as_ptr() as usize)
            .checked_sub(message.as_ptr() as usize)
            .filter(|at| at + part.len() <= message.len())
            .ok_or_else(|| FilterError("an entry is not inside the message".into()))
    };
    let before = message[..offset(first.get())?].trim_end();
    let after = &message[offset(last.get())? + last.get().len()..];
    let (Some(head), Some(tail)) = (
        before.strip_suffix('['),
        after.trim_start().strip_prefix(']'),
    ) else {
        return Err(FilterError("the list is not where its entries are".into()));
    };
    let (start, end) = (head.len(), message.len() - tail.len());
    let mut kept = Vec::with_capacity(entries.len());
    for &entry in &entries {
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
    let mut list = String::with_capacity(end - start);
    list.push('[');
    for (i, entry) in kept.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        list.push_str(entry.get());
    }
    list.push(']');
    let mut splices = vec![(start, end, list)];
    // The list now depends on who asks: a cache shared across authorization contexts must not
    // hand it to anyone else (MCP 2026-07-28 caching), whatever the upstream allowed.
    if let Some(scope) = cache_scope.filter(|scope| scope.get() != r#""private""#) {
        let at = offset(scope.get())?;
        splices.push((at, at + scope.get().len(), r#""private""#.to_owned()));
    }
    splices.sort_by_key(|(at, _, _)| *at);
    let mut out = String::with_capacity(message.len());
    let mut copied = 0;
    for (from, to, text) in splices {
        out.push_str(&message[copied..from]);
        out.push_str(&text);
        copied = to;
    }
    out.push_str(&message[copied..]);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"submit_expense","inputSchema":{"type":"object","properties":{"amount":{"type":"number"}}}},{"name":"delete_all_expenses","inputSchema":{"type":"object"}},{"name":"list_expenses","description":"List \u00e9","inputSchema":{"type":"object"}}],"nextCursor":"abc"}}"#;

    fn granted(_kind: ListKind, name: &str, _entry: &RawValue) -> bool {
        name != "delete_all_expenses"
    }

    #[test]
    fn a_filtered_list_is_never_left_cacheable_across_authorization_contexts() {
        for (at_end, scope) in [(true, r#""public""#), (false, r#""public""#), (true, "7")] {
            let members = [
                r#""tools":[{"name":"delete_all_expenses"},{"name":"a"}]"#.to_owned(),
                format!(r#""ttlMs":500,"cacheScope":{scope}"#),
            ];
            let [first, second] = if at_end {
                [&members[0], &members[1]]
            } else {
                [&members[1], &members[0]]
            };
            let message = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{{first},{second}}}}}"#);
            let out = filter(&message, granted).unwrap().unwrap();
            let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(parsed["result"]["cacheScope"], "private", "{out}");
            assert_eq!(parsed["result"]["ttlMs"], 500);
            assert_eq!(
                parsed["result"]["tools"],
                serde_json::json!([{"name": "a"}])
            );
        }
        let private =
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"cacheScope":"private"}}"#;
        assert_eq!(filter(private, granted).unwrap().unwrap(), private);
    }

    #[test]
    fn a_result_with_two_kinds_of_list_is_not_passed_on() {
        let both = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}],"prompts":[{"name":"delete_all_expenses"}]}}"#;
        assert!(filter(both, granted).is_err());
    }

    #[test]
    fn pretty_printed_lists_are_spliced_exactly() {
        let pretty = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [\n      {\"name\": \"delete_all_expenses\"},\n      {\"name\": \"list_expenses\"}\n    ],\n    \"nextCursor\": \"n\"\n  }\n}";
        let out = filter(pretty, granted).unwrap().unwrap();
        assert_eq!(
            out,
            "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 1,\n  \"result\": {\n    \"tools\": [{\"name\": \"list_expenses\"}],\n    \"nextCursor\": \"n\"\n  }\n}"
        );
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["result"]["nextCursor"], "n");
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
