//! Step-up approval: calls a person must approve, one exact call at a time, before they run.
//!
//! The terms that say which calls are in the constraints (`ApprovalTerm`); a call they apply
//! to is judged `Decision::NeedsApproval` with its [`Requirement`]. Here is what the parties
//! exchange about such a call: the gateway's question ([`CallToApprove`]), the answer of the
//! keeper of approvals (the issuer, [`Answer`]), and the digest an approval is bound to.
//!
//! An approval is bound to one call: the tool and the SHA-256 of its arguments in the JSON
//! Canonicalization Scheme (RFC 8785, [`arguments_digest`]), so the same arguments in another
//! key order are the same call and any other value is another.
//!
//! Terms only accumulate: a delegated token keeps every term of its parent, so a call a
//! parent would have sent to a person is sent to a person (at least as strict a one) by every
//! descendant.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What a gateway asks the keeper of approvals (the issuer's `POST /approvals`) about one
/// call that needs a person's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallToApprove {
    /// The grant (`gid`).
    pub grant_id: String,
    /// The token that made the call (`jti`).
    pub token_id: String,
    /// The user (`sub`).
    pub sub: String,
    /// The agents, current actor first (as in `act`).
    pub act: Vec<String>,
    /// The upstream's name.
    pub upstream: String,
    /// The full `upstream/tool` name.
    pub tool: String,
    /// The call's arguments, as sent.
    pub arguments: Value,
    /// What the token's approval terms require.
    pub requirement: Requirement,
    /// The asking gateway (its audit id), recorded when it spends an approval.
    pub gateway: String,
}

/// The answer about a [`CallToApprove`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answer {
    /// Approved, and now spent on this call: forward it.
    Approved {
        /// The approval's id, for the decision log.
        id: String,
    },
    /// Waiting for a person at `url`.
    Pending {
        /// The request's id.
        id: String,
        /// The approval page.
        url: String,
        /// When the request lapses (Unix seconds).
        expires_at: i64,
    },
    /// A person refused this call.
    Denied {
        /// The request's id.
        id: String,
    },
    /// The grant is revoked: no approval can be given for it.
    Void,
}

/// What a call needs before it may run: the combination of every term that applies to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// Besides the user's approval, a second one from one of these people (never the user),
    /// when an applying term asks for four eyes; with several such terms, from someone every
    /// one of them names. `Some` and empty: those terms share nobody, so no second approval
    /// can be given and the call can never run. `None`: the user alone approves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub four_eyes: Option<Vec<String>>,
    /// Seconds an approval stays good for: the shortest of the applying terms'.
    pub valid_for: u32,
}

/// The digest an approval is bound to: base64url(SHA-256(RFC 8785 canonical form of the
/// arguments)). Absent arguments are the empty object.
pub fn arguments_digest(arguments: &Value) -> String {
    let canonical = match arguments {
        Value::Null => b"{}".to_vec(),
        value => serde_jcs::to_vec(value).expect("a JSON value always canonicalises"),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::constraint::{ApprovalTerm, DEFAULT_VALID_FOR};

    fn term(value: Value) -> ApprovalTerm {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_term_round_trips_without_repeating_its_tool_in_conditions() {
        let wire = json!({"tool": "expenses/submit_expense",
                          "when": [{"pointer": "/amount", "min": 200}],
                          "four_eyes": ["carol"], "valid_for": 600});
        assert_eq!(serde_json::to_value(term(wire.clone())).unwrap(), wire);
        let defaulted = term(json!({"tool": "k8s/delete_*"}));
        assert_eq!(defaulted.valid_for(), DEFAULT_VALID_FOR);
    }

    #[test]
    fn a_term_reads_in_plain_words() {
        let t = term(json!({"tool": "expenses/submit_expense",
                            "when": [{"pointer": "/amount", "min": 200}],
                            "four_eyes": ["carol", "dave"], "valid_for": 600}));
        assert_eq!(
            t.describe(),
            "needs the user's approval for each call of expenses/submit_expense when /amount ≥ 200, \
             and a second approval from one of carol, dave (an approval is good for 10 min)"
        );
    }

    #[test]
    fn bad_terms_are_refused() {
        for bad in [
            json!({"tool": "a/b", "valid_for": 0}),
            json!({"tool": "a/b", "valid_for": 86_401}),
            json!({"tool": "a/b", "when": [{"pointer": "/x"}]}),
            json!({"tool": "a/b", "when": [{"tool": "a/c", "pointer": "/x", "max": 1}]}),
            json!({"tool": "a/b", "four_eyes": [""]}),
            json!({"tool": "a/b", "approvers": ["x"]}),
        ] {
            assert!(
                serde_json::from_value::<ApprovalTerm>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_condition_decides_which_calls_need_approval_and_doubt_asks() {
        let t = term(json!({"tool": "expenses/submit_expense",
                            "when": [{"pointer": "/amount", "min": 200}]}));
        let tool = "expenses/submit_expense";
        assert!(!t.applies(tool, &json!({"amount": 150})));
        assert!(t.applies(tool, &json!({"amount": 300})));
        assert!(t.applies(tool, &json!({"amount": "300"})), "wrong type");
        assert!(t.applies(tool, &json!({})), "missing");
        assert!(!t.applies("expenses/list_expenses", &json!({"amount": 300})));
    }

    #[test]
    fn applying_terms_combine_to_the_strictest_requirement() {
        let terms = [
            term(json!({"tool": "pay/*", "four_eyes": ["carol", "dave"], "valid_for": 600})),
            term(json!({"tool": "pay/send", "four_eyes": ["dave", "erin"], "valid_for": 120})),
            term(json!({"tool": "pay/refund", "four_eyes": ["erin"]})),
        ];
        assert_eq!(
            Requirement::of(&terms, "pay/send", &json!({})),
            Some(Requirement {
                four_eyes: Some(vec!["dave".into()]),
                valid_for: 120
            })
        );
        let nobody = Requirement::of(&terms, "pay/refund", &json!({})).unwrap();
        assert_eq!(nobody.four_eyes, Some(Vec::new()));
        assert_eq!(Requirement::of(&terms, "mail/send", &json!({})), None);
    }

    #[test]
    fn the_digest_ignores_key_order_and_whitespace_but_not_values() {
        let a: Value =
            serde_json::from_str(r#"{"amount": 300, "note": {"b": 1, "a": 2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"note":{"a":2,"b":1},"amount":300}"#).unwrap();
        let c: Value = serde_json::from_str(r#"{"note":{"a":2,"b":1},"amount":301}"#).unwrap();
        assert_eq!(arguments_digest(&a), arguments_digest(&b));
        assert_ne!(arguments_digest(&a), arguments_digest(&c));
        assert_eq!(arguments_digest(&Value::Null), arguments_digest(&json!({})));
    }

    #[test]
    fn strictness_compares_tools_conditions_people_and_time() {
        let base = term(json!({"tool": "expenses/submit_expense",
                               "when": [{"pointer": "/amount", "min": 200}]}));
        let wider = term(json!({"tool": "expenses/*",
                                "when": [{"pointer": "/amount", "min": 100}], "valid_for": 60}));
        let looser = term(json!({"tool": "expenses/submit_expense",
                                 "when": [{"pointer": "/amount", "min": 500}]}));
        let longer = term(json!({"tool": "expenses/submit_expense",
                                 "when": [{"pointer": "/amount", "min": 200}], "valid_for": 3600}));
        assert!(wider.at_least_as_strict_as(&base));
        assert!(base.at_least_as_strict_as(&base));
        assert!(!looser.at_least_as_strict_as(&base));
        assert!(!longer.at_least_as_strict_as(&base));
        assert!(!base.at_least_as_strict_as(&wider));
    }
}
