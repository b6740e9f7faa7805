//! Filtering a list result (`tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list`) to what a token allows and, with pinning on, to tools whose definitions are
//! pinned. The proxy applies it to upstream answers (JSON or SSE) and a fleet to each member's
//! pages, so a tool is shown or hidden by the same rule wherever it is listed. A list that
//! cannot be read is replaced by an error, never passed on (fail closed); see `tools_list` for
//! the one-pass splice underneath.

use portcullis_policy::VerifiedToken;
use serde_json::Value;

use crate::jsonrpc_error::GatewayError;
use crate::pins::{Pins, Verdict};
use crate::tools_list::{self, ListKind};
use crate::{clock, metrics};

/// Filters a list result to what `token` allows and, with pinning on, to tools whose
/// definitions are pinned; tools seen changed for the first time are added to `changed`.
pub(crate) fn filter_message(
    message: &str,
    upstream: &str,
    token: Option<&VerifiedToken>,
    pins: Option<&Pins>,
    changed: &mut Vec<String>,
) -> Option<String> {
    let constraints = token.and_then(|t| t.claims().constraints.as_ref());
    let mut hidden = 0usize;
    // One buffer for every `upstream/name`, instead of an allocation per entry.
    let mut full = String::with_capacity(upstream.len() + 64);
    let result = tools_list::filter(message, |kind, name, entry| {
        full.clear();
        full.push_str(upstream);
        full.push('/');
        full.push_str(name);
        let pinned = match (kind, pins) {
            (ListKind::Tools, Some(pins)) => {
                match pins.observe(upstream, name, entry, clock::now()) {
                    Verdict::Trusted => true,
                    Verdict::Changed { first } => {
                        if first {
                            changed.push(name.to_owned());
                        }
                        false
                    }
                }
            }
            _ => true,
        };
        let granted = constraints.is_some_and(|c| match kind {
            ListKind::Tools => {
                // Pinned just now or before: the pin's hints are this very definition's.
                let hints = pins
                    .filter(|_| pinned && c.uses_tool_hints())
                    .and_then(|p| p.hints(upstream, name));
                c.allows_tool(&full, hints)
            }
            ListKind::Resources | ListKind::ResourceTemplates => c.allows_resource(&full),
            ListKind::Prompts => c.allows_prompt(&full),
        });
        let visible = granted && pinned;
        hidden += usize::from(!visible);
        visible
    });
    match result {
        Ok(filtered) => {
            if hidden > 0 {
                metrics::tools_hidden(upstream, hidden);
            }
            filtered
        }
        Err(e) => {
            tracing::warn!(upstream, "withholding a tools/list result: {e}");
            Some(
                String::from_utf8(GatewayError::FilterFailed { id: Value::Null }.body())
                    .expect("JSON is UTF-8"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfilterable_list_is_replaced_by_an_error_not_passed_on() {
        let sneaky = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a","name":"b"}]}}"#;
        let out = filter_message(sneaky, "expenses", None, None, &mut Vec::new()).unwrap();
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["error"]["code"], crate::jsonrpc_error::INTERNAL);
        assert!(!out.contains("\"b\""));
    }

    #[test]
    fn without_a_token_every_tool_is_hidden() {
        let list = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#;
        let out = filter_message(list, "expenses", None, None, &mut Vec::new()).unwrap();
        assert!(out.contains(r#""tools":[]"#), "{out}");
    }
}
