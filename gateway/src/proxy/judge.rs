//! Judging: every `tools/call`, `resources/read` and `prompts/get` against change freezes,
//! tool pins, the token's constraints, a person's approval where the grant asks for one, and
//! the grant's hourly rate, each decision counted and logged in one place.
//!
//! What comes out is a [`Judged`]: the request's message together with the `Permit` of every
//! part that needed one. Only this module makes one, and forwarding takes one (through
//! `context::Forward`), so an unjudged call has no way upstream. In a batch every element is
//! judged as if it came alone; one refusal refuses the whole batch, so no part of it runs on a
//! judgement the agent could not see.

use portcullis_policy as policy;
use portcullis_policy::approval::Answer;
use portcullis_policy::{
    Action, ApprovalNeeded, Decision, DenyReason, Permit, VerifiedToken, authorize,
};
use serde_json::Value;

use crate::jsonrpc::{self, Message};
use crate::jsonrpc_error::{ApprovalAnswer, ApprovalWait, GatewayError};
use crate::rate_limit::Unavailable;
use crate::session::ClientAbilities;
use crate::state::GatewayState;
use crate::upstream::Upstream;
use crate::{clock, decision_log, metrics};

/// What a request was allowed to carry upstream.
#[derive(Debug)]
pub(super) struct Judged {
    /// The message, for a request with a body.
    message: Option<Message>,
    /// The proof behind each judged part of it; held, not read: its existence is the point.
    _permits: Vec<Permit>,
}

impl Judged {
    /// A request without a body (the agent's `GET` stream, a session's `DELETE`): nothing in
    /// it names a tool, a resource or a prompt. `None` for any other method, whose body must
    /// be judged.
    pub(super) fn bodiless(method: &http::Method) -> Option<Self> {
        matches!(*method, http::Method::GET | http::Method::DELETE).then_some(Self {
            message: None,
            _permits: Vec::new(),
        })
    }

    /// The message, if the request has one.
    pub(super) fn message(&self) -> Option<&Message> {
        self.message.as_ref()
    }
}

/// The rule that decided, as counted and logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Rule {
    /// Allowed.
    Permit,
    /// Refused by the rule with this code.
    Deny(&'static str),
}

impl Rule {
    fn of(decision: &Decision) -> Self {
        match decision {
            Decision::Permit(_) => Rule::Permit,
            Decision::NeedsApproval(_) => Rule::Deny("approval_required"),
            Decision::Deny(reason) => Rule::Deny(reason.code()),
        }
    }

    fn outcome(self) -> &'static str {
        match self {
            Rule::Permit => "allow",
            Rule::Deny(_) => "deny",
        }
    }

    fn code(self) -> &'static str {
        match self {
            Rule::Permit => "permit",
            Rule::Deny(code) => code,
        }
    }
}

/// The judge of one request, under one token, at one upstream.
#[derive(Debug, Clone, Copy)]
pub(super) struct Judge<'a> {
    pub(super) state: &'a GatewayState,
    pub(super) upstream: &'a Upstream,
    pub(super) token: &'a VerifiedToken,
    /// What the agent's client declared when it opened its session.
    pub(super) client: ClientAbilities,
}

impl Judge<'_> {
    /// Judges every part of `message` that needs it.
    pub(super) async fn message(&self, message: Message) -> Result<Judged, GatewayError> {
        let mut answers = Vec::new();
        let mut permits = Vec::new();
        let mut refused = false;
        for element in message.elements() {
            let Message::Request {
                id,
                method,
                call,
                access,
                url_elicitation,
            } = element
            else {
                continue;
            };
            // Capabilities in the request's own `_meta` are 2026-07-28's, where a client is
            // asked for input in a result; a session's are from its `initialize`.
            let answer = if *url_elicitation {
                ApprovalAnswer::InputRequired
            } else if self.client.url_elicitation {
                ApprovalAnswer::UrlElicitation
            } else {
                ApprovalAnswer::Plain
            };
            let judged = match (call, access) {
                (Some(call), _) => Some(self.call(id, call, answer).await),
                (None, Some(access)) => Some(self.access(id, method, access)),
                (None, None) => None,
            };
            match judged {
                Some(Ok(permit)) => permits.push(permit),
                Some(Err(refusal)) => {
                    refused = true;
                    answers.push(refusal);
                    continue;
                }
                None => {}
            }
            answers.push(GatewayError::BatchSibling { id: id.clone() });
        }
        if refused {
            return Err(match message {
                Message::Batch(_) => GatewayError::BatchRefused(answers),
                _ => answers.pop().expect("the refusal of the one request"),
            });
        }
        Ok(Judged {
            message: Some(message),
            _permits: permits,
        })
    }

    /// Judges a `tools/call`: tool pins and change freezes first, then the token's
    /// constraints, then a person's approval where the grant asks for one (a round trip to the
    /// issuer), then the grant's hourly rate (on the shared store). `answer`: how a call
    /// waiting for approval is answered.
    async fn call(
        &self,
        id: &Value,
        call: &jsonrpc::ToolCall,
        answer: ApprovalAnswer,
    ) -> Result<Permit, GatewayError> {
        let upstream = self.upstream;
        let tool = format!("{}/{}", upstream.name, call.name);
        let record = |rule, approval| {
            self.record(
                "tools/call",
                &call.name,
                Some(&call.arguments),
                rule,
                approval,
            )
        };
        if self
            .state
            .pins
            .as_ref()
            .is_some_and(|pins| pins.is_changed(&upstream.name, &call.name))
        {
            record(Rule::Deny("tool_definition_changed"), None);
            return Err(GatewayError::ToolChanged {
                id: id.clone(),
                tool,
            });
        }
        if let Some(pattern) = self.state.controls.frozen(&tool) {
            record(Rule::Deny("change_freeze"), None);
            return Err(GatewayError::Frozen {
                id: id.clone(),
                tool,
                pattern: pattern.as_str().to_owned(),
            });
        }
        let now = clock::now();
        let action = Action {
            tool: &tool,
            arguments: &call.arguments,
            at: now,
            // Looked up only where the grant judges by them.
            hints: self
                .state
                .pins
                .as_ref()
                .filter(|_| {
                    let constraints = self.token.claims().constraints.as_ref();
                    constraints.is_some_and(policy::Constraints::uses_tool_hints)
                })
                .and_then(|pins| pins.hints(&upstream.name, &call.name)),
        };
        let decision = match authorize(self.token, &action) {
            Decision::NeedsApproval(needed) => {
                match self.approval(id, needed, &call.arguments, answer).await {
                    Ok(permit) => Decision::Permit(permit),
                    Err(refusal) => {
                        record(Rule::Deny(refusal.label()), None);
                        return Err(refusal);
                    }
                }
            }
            decision => decision,
        };
        let decision = match decision {
            Decision::Permit(permit) => match self.within_rate(permit, now).await {
                Ok(decision) => decision,
                Err(unavailable) => {
                    record(Rule::Deny("rate_unavailable"), None);
                    tracing::warn!(upstream = %upstream.name, %tool, "refused: {unavailable}");
                    return Err(GatewayError::RateUnavailable {
                        id: id.clone(),
                        tool,
                    });
                }
            },
            other => other,
        };
        let approval = match &decision {
            Decision::Permit(permit) => permit.approval(),
            _ => None,
        };
        record(Rule::of(&decision), approval);
        match decision {
            Decision::Permit(permit) => Ok(permit),
            Decision::NeedsApproval(_) => unreachable!("asked of the issuer above"),
            Decision::Deny(reason) => {
                let claims = self.token.claims();
                tracing::info!(
                    upstream = %upstream.name, %tool, sub = %claims.subject,
                    client_id = %claims.client_id, reason = reason.code(), "denied: {reason}"
                );
                if upstream.incremental_consent
                    && let DenyReason::ToolNotGranted { .. } = reason
                {
                    return Err(GatewayError::InsufficientScope {
                        id: id.clone(),
                        scope: self.scope_with(&tool),
                        tool,
                    });
                }
                Err(GatewayError::denied(id.clone(), tool, reason))
            }
        }
    }

    /// Asks the issuer about a call that needs a person's approval: its permit when an
    /// approval of exactly this call was there to spend, else the answer the agent gets.
    async fn approval(
        &self,
        id: &Value,
        needed: ApprovalNeeded,
        arguments: &Value,
        how: ApprovalAnswer,
    ) -> Result<Permit, GatewayError> {
        let upstream = &self.upstream.name;
        let tool = needed.tool().to_owned();
        let answer = self
            .state
            .approvals
            .ask(&needed, self.token.claims(), upstream, arguments)
            .await;
        let id = id.clone();
        match answer {
            Ok(Answer::Approved { id: approval }) => {
                crate::metrics::approval(upstream, "spent");
                Ok(needed.approved(approval))
            }
            Ok(Answer::Pending {
                id: approval,
                url,
                expires_at,
            }) => {
                crate::metrics::approval(upstream, "pending");
                Err(GatewayError::ApprovalRequired(Box::new(ApprovalWait {
                    id,
                    tool,
                    approval,
                    url,
                    expires_at,
                    answer: how,
                })))
            }
            Ok(Answer::Denied { id: approval }) => {
                crate::metrics::approval(upstream, "denied");
                Err(GatewayError::ApprovalDenied { id, tool, approval })
            }
            Ok(Answer::Void) => {
                crate::metrics::approval(upstream, "void");
                Err(GatewayError::ApprovalVoid { id, tool })
            }
            Err(e) => {
                crate::metrics::approval(upstream, "unavailable");
                tracing::warn!(%upstream, %tool, "refused: {e}");
                Err(GatewayError::ApprovalUnavailable { id, tool })
            }
        }
    }

    /// The scope to ask the person for: the token's tools and `tool`, so the new grant
    /// narrows nothing the old one gave.
    fn scope_with(&self, tool: &str) -> String {
        let granted = self
            .token
            .claims()
            .constraints
            .iter()
            .flat_map(|c| c.tools());
        let mut scope: Vec<String> = granted.map(|p| format!("mcp:tools:{p}")).collect();
        scope.push(format!("mcp:tools:{tool}"));
        scope.join(" ")
    }

    /// Spends one call of the grant's hourly rate, if the token caps it; fails only when a
    /// strict shared store cannot count it.
    async fn within_rate(&self, permit: Permit, now: i64) -> Result<Decision, Unavailable> {
        let Some(rate) = permit.rate() else {
            return Ok(Decision::Permit(permit));
        };
        let grant = permit.grant_id().unwrap_or(permit.token_id());
        let per_hour = rate.per_hour;
        Ok(
            if self
                .state
                .rate_caps
                .try_acquire(grant, per_hour, now)
                .await?
            {
                Decision::Permit(permit)
            } else {
                Decision::Deny(DenyReason::RateExceeded { per_hour })
            },
        )
    }

    /// Judges a request that names a resource or a prompt (`resources/read`, `prompts/get`,
    /// a subscription, a completion): the grant must name it.
    fn access(
        &self,
        id: &Value,
        method: &str,
        access: &jsonrpc::Access,
    ) -> Result<Permit, GatewayError> {
        let upstream = &self.upstream.name;
        let target = match access {
            jsonrpc::Access::Resource(uri) => uri,
            jsonrpc::Access::Prompt(name) => name,
        };
        let full = format!("{upstream}/{target}");
        let request = match access {
            jsonrpc::Access::Resource(_) => policy::Access::Resource(&full),
            jsonrpc::Access::Prompt(_) => policy::Access::Prompt(&full),
        };
        let decision = policy::authorize_access(self.token, request, clock::now());
        self.record(method, target, None, Rule::of(&decision), None);
        match decision {
            Decision::Permit(permit) => Ok(permit),
            Decision::NeedsApproval(_) => unreachable!("approval terms name tools only"),
            Decision::Deny(reason) => Err(GatewayError::denied(id.clone(), full, reason)),
        }
    }

    /// Counts a decision and hands it to the audit log, naming the approval that let a call
    /// through.
    fn record(
        &self,
        method: &str,
        target: &str,
        arguments: Option<&Value>,
        rule: Rule,
        approval: Option<&str>,
    ) {
        metrics::decision(&self.upstream.name, rule.outcome(), rule.code());
        self.log(method, target, arguments, rule, approval);
    }

    /// Hands a decision to the audit log, if one is configured (uncounted: a changed tool
    /// hidden from a list is logged, not counted as a call's decision).
    pub(super) fn log(
        &self,
        method: &str,
        target: &str,
        arguments: Option<&Value>,
        rule: Rule,
        approval: Option<&str>,
    ) {
        let Some(log) = &self.state.decisions else {
            return;
        };
        log.record(decision_log::Decision {
            arguments_digest: arguments.map(decision_log::digest),
            approval: approval.map(str::to_owned),
            ..decision_log::Decision::under(
                self.token.claims(),
                &self.upstream.name,
                method,
                target,
                (rule.outcome(), rule.code()),
            )
        });
    }

    /// Logs the tools a list hid because their pinned definitions changed.
    pub(super) fn log_changed_tools(&self, tools: &[String]) {
        for tool in tools {
            self.log(
                "tools/list",
                tool,
                None,
                Rule::Deny("tool_definition_changed"),
                None,
            );
        }
    }
}
