//! Monotonic attenuation: a delegated token never carries more authority than its parent.
//!
//! The child's constraints keep every parent rule and add the requested ones, so whatever the
//! request says, `child allows ⇒ parent allows` holds by construction (the property tests in
//! `tests/laws.rs` check it). On top of that, requests are judged so the resulting token says
//! plainly what it allows:
//!
//! - a requested tool pattern must be covered by a parent pattern, or the request is refused;
//! - a looser numeric limit is clamped to the parent's; a wider `in` set, a different `eq` or a
//!   prefix that does not extend the parent's is refused;
//! - windows are intersected (windows in different time zones cannot be, and are refused);
//! - the rate is the smaller of the two;
//! - every approval term of the parent stays; a request that lists approval terms without
//!   one at least as strict as each of the parent's is refused rather than silently mended;
//! - `max_depth` decreases by one per re-delegation, and a parent at depth 0 cannot delegate;
//! - `exp` never outlives the parent's.

use crate::claims::{Actor, ActorChain, Claims, ClaimsError};
use crate::constraint::{Constraints, Limit, Rate, ToolPattern, Window};
use crate::decision::json_equal;

/// Why a delegation was refused. Each maps to OAuth `invalid_scope` at the issuer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AttenuationError {
    /// The parent token carries no constraints to narrow.
    #[error("the parent token grants no tools")]
    NoAuthority,
    /// The parent may not delegate further.
    #[error("the parent token may not be delegated further (max_depth 0)")]
    DepthExhausted,
    /// A requested tool pattern is not inside the parent's tools.
    #[error("tool pattern {0} is not within the parent's tools")]
    ToolWidened(String),
    /// A requested resource or prompt pattern is not inside the parent's.
    #[error("{0} is not within the parent's resources or prompts")]
    AccessWidened(String),
    /// A requested limit is wider than the parent's and cannot be clamped.
    #[error("limit on {pointer} for {tool} is wider than the parent's: {reason}")]
    LimitWidened {
        /// The limit's tool pattern.
        tool: String,
        /// The limit's pointer.
        pointer: String,
        /// Which rule widens.
        reason: &'static str,
    },
    /// A requested window does not overlap the parent's, or uses another time zone.
    #[error("requested windows are not within the parent's: {0}")]
    WindowWidened(&'static str),
    /// The request names approval terms, and one of the parent's has no counterpart among
    /// them at least as strict: a child keeps every approval term of its parent.
    #[error("the approval term on {0} of the parent would be dropped or loosened")]
    ApprovalDropped(String),
    /// The parent is bound to a key (DPoP) and the child would not be: a bound token only
    /// delegates to bound tokens.
    #[error("the parent token is bound to a key (DPoP) and the child would not be")]
    BindingDropped,
    /// The actor chain would grow too long.
    #[error(transparent)]
    Chain(#[from] ClaimsError),
}

/// What a delegation asks for, beyond what the parent token already says.
#[derive(Debug, Clone)]
pub struct DelegationRequest {
    /// The agent that will hold the child token.
    pub actor: Actor,
    /// The resource the child token is for.
    pub audience: String,
    /// Narrower constraints, or `None` to keep the parent's.
    pub constraints: Option<Constraints>,
    /// Now, Unix seconds.
    pub issued_at: i64,
    /// The wanted expiry; clamped to the parent's.
    pub expires_at: i64,
    /// The child's `jti`.
    pub token_id: String,
    /// The thumbprint of the key the child token is bound to (DPoP `cnf.jkt`): the key of the
    /// agent that will hold it. Required when the parent is bound.
    pub confirmation: Option<String>,
}

/// Derives the claims of a child token from its parent's.
///
/// A parent without `act` is the user's own grant token: delegating it to a first agent starts
/// the chain and keeps the grant's `max_depth`. A parent with `act` is already delegated:
/// appending an actor costs one level of depth.
pub fn attenuate(parent: &Claims, request: DelegationRequest) -> Result<Claims, AttenuationError> {
    let parent_constraints = parent
        .constraints
        .as_ref()
        .ok_or(AttenuationError::NoAuthority)?;
    if parent.confirmation.is_some() && request.confirmation.is_none() {
        return Err(AttenuationError::BindingDropped);
    }
    let (actors, depth_cap) = match &parent.actors {
        None => (ActorChain::new(request.actor), parent_constraints.max_depth),
        Some(chain) => {
            let depth = parent_constraints
                .max_depth
                .checked_sub(1)
                .ok_or(AttenuationError::DepthExhausted)?;
            (chain.delegate_to(request.actor)?, depth)
        }
    };
    let requested = request
        .constraints
        .unwrap_or_else(|| parent_constraints.clone());
    let mut constraints = narrow(parent_constraints, &requested)?;
    constraints.max_depth = constraints.max_depth.min(depth_cap);
    let client_id = actors.current().sub.clone();
    Ok(Claims {
        issuer: parent.issuer.clone(),
        subject: parent.subject.clone(),
        audience: vec![request.audience],
        expires_at: request.expires_at.min(parent.expires_at),
        not_before: Some(request.issued_at),
        issued_at: request.issued_at,
        token_id: request.token_id,
        client_id,
        scope: parent.scope.clone(),
        actors: Some(actors),
        grant_id: parent.grant_id.clone(),
        confirmation: request.confirmation,
        constraints: Some(constraints),
    })
}

/// The constraints `request` asks for, made no wider than `parent`.
pub fn narrow(
    parent: &Constraints,
    request: &Constraints,
) -> Result<Constraints, AttenuationError> {
    for wanted in &request.tools {
        if !parent.tools.iter().any(|p| p.covers(wanted)) {
            return Err(AttenuationError::ToolWidened(wanted.to_string()));
        }
    }
    // A read-only pattern allows less than the same pattern in `tools`: either covers it.
    for wanted in &request.read_only {
        let covered = parent
            .read_only
            .iter()
            .chain(&parent.tools)
            .any(|p| p.covers(wanted));
        if !covered {
            return Err(AttenuationError::ToolWidened(format!(
                "the read-only tools of {wanted}"
            )));
        }
    }
    for wanted in &request.resources {
        if !parent.resources.iter().any(|p| p.covers(wanted)) {
            return Err(AttenuationError::AccessWidened(wanted.to_string()));
        }
    }
    for wanted in &request.prompts {
        if !parent.prompts.iter().any(|p| p.covers(wanted)) {
            return Err(AttenuationError::AccessWidened(wanted.to_string()));
        }
    }
    let mut deny = parent.deny.clone();
    push_missing(&mut deny, &request.deny);

    let mut limits = Vec::with_capacity(parent.limits.len() + request.limits.len());
    // A parent limit may be left out only where a requested limit on the very same tools and
    // argument was tightened by it (and so implies it); every other parent limit stays.
    let mut absorbed = vec![false; parent.limits.len()];
    for wanted in &request.limits {
        let mut limit = wanted.clone();
        for (i, inherited) in parent.limits.iter().enumerate() {
            if inherited.pointer == wanted.pointer && inherited.tool.covers(&wanted.tool) {
                tighten(&mut limit, inherited)?;
                absorbed[i] |= inherited.same_target(wanted);
            }
        }
        if !limits.contains(&limit) {
            limits.push(limit);
        }
    }
    for (inherited, absorbed) in parent.limits.iter().zip(absorbed) {
        if !absorbed && !limits.contains(inherited) {
            limits.push(inherited.clone());
        }
    }

    if !request.approval.is_empty()
        && let Some(dropped) = parent.approval.iter().find(|inherited| {
            !request
                .approval
                .iter()
                .any(|wanted| wanted.at_least_as_strict_as(inherited))
        })
    {
        return Err(AttenuationError::ApprovalDropped(
            dropped.tool().to_string(),
        ));
    }
    let mut approval = parent.approval.clone();
    for wanted in &request.approval {
        if !approval.contains(wanted) {
            approval.push(wanted.clone());
        }
    }

    Ok(Constraints {
        tools: request.tools.clone(),
        deny,
        read_only: request.read_only.clone(),
        deny_destructive: parent.deny_destructive || request.deny_destructive,
        resources: request.resources.clone(),
        prompts: request.prompts.clone(),
        limits,
        windows: intersect_windows(&parent.windows, &request.windows)?,
        rate: match (parent.rate, request.rate) {
            (Some(p), Some(r)) => Some(Rate {
                per_hour: p.per_hour.min(r.per_hour),
            }),
            (p, r) => p.or(r),
        },
        approval,
        max_depth: request.max_depth.min(parent.max_depth),
    })
}

fn push_missing(into: &mut Vec<ToolPattern>, from: &[ToolPattern]) {
    for pattern in from {
        if !into.contains(pattern) {
            into.push(pattern.clone());
        }
    }
}

fn tighten(limit: &mut Limit, parent: &Limit) -> Result<(), AttenuationError> {
    let widened = |reason| AttenuationError::LimitWidened {
        tool: limit.tool.to_string(),
        pointer: limit.pointer.clone(),
        reason,
    };
    if let Some(max) = parent.max {
        limit.max = Some(limit.max.map_or(max, |m| m.min(max)));
    }
    if let Some(min) = parent.min {
        limit.min = Some(limit.min.map_or(min, |m| m.max(min)));
    }
    if let (Some(min), Some(max)) = (limit.min, limit.max)
        && min > max
    {
        return Err(widened("min is above the parent's max"));
    }
    if let Some(allowed) = &parent.one_of {
        match &limit.one_of {
            None => limit.one_of = Some(allowed.clone()),
            Some(wanted) => {
                if !wanted
                    .iter()
                    .all(|w| allowed.iter().any(|a| json_equal(a, w)))
                {
                    return Err(widened("'in' names a value the parent does not allow"));
                }
            }
        }
    }
    if let Some(expected) = &parent.eq {
        match &limit.eq {
            None => limit.eq = Some(expected.clone()),
            Some(wanted) if json_equal(wanted, expected) => {}
            Some(_) => return Err(widened("'eq' differs from the parent's")),
        }
    }
    if let Some(prefix) = &parent.prefix {
        match &limit.prefix {
            None => limit.prefix = Some(prefix.clone()),
            Some(wanted) if wanted.starts_with(prefix.as_str()) => {}
            Some(_) => return Err(widened("'prefix' does not extend the parent's")),
        }
    }
    Ok(())
}

fn intersect_windows(
    parent: &[Window],
    request: &[Window],
) -> Result<Vec<Window>, AttenuationError> {
    if request.is_empty() {
        return Ok(parent.to_vec());
    }
    if parent.is_empty() {
        return Ok(request.to_vec());
    }
    let mut out = Vec::new();
    for p in parent {
        for r in request {
            match p.intersect(r) {
                Err(()) => {
                    return Err(AttenuationError::WindowWidened(
                        "a window uses another time zone than the parent's",
                    ));
                }
                Ok(Some(w)) if !out.contains(&w) => out.push(w),
                Ok(_) => {}
            }
        }
    }
    if out.is_empty() {
        return Err(AttenuationError::WindowWidened(
            "no requested window overlaps the parent's",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::decision::Action;

    fn constraints(detail: Value) -> Constraints {
        Constraints::from_authorization_details(&[detail]).unwrap()
    }

    fn parent() -> Constraints {
        constraints(json!({
            "type": "mcp_tools",
            "tools": ["expenses/submit_expense", "expenses/list_*"],
            "limits": [
                {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 500},
                {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "meal"]}
            ],
            "windows": [{"days": ["mon", "tue", "wed"], "start": "08:00", "end": "18:00", "tz": "UTC"}],
            "rate": {"per_hour": 100},
            "max_depth": 2
        }))
    }

    fn request(extra: Value) -> Constraints {
        let mut base = json!({"type": "mcp_tools", "tools": ["expenses/submit_expense"]});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        constraints(base)
    }

    fn claims(constraints: Constraints, actors: Option<ActorChain>) -> Claims {
        Claims {
            issuer: "https://issuer".into(),
            subject: "alice".into(),
            audience: vec!["https://gw/mcp/expenses".into()],
            expires_at: 10_000,
            not_before: None,
            issued_at: 1_000,
            token_id: "parent".into(),
            client_id: "agent-a".into(),
            scope: None,
            actors,
            grant_id: Some("g1".into()),
            confirmation: None,
            constraints: Some(constraints),
        }
    }

    fn delegation(constraints: Option<Constraints>, expires_at: i64) -> DelegationRequest {
        DelegationRequest {
            actor: Actor {
                sub: "agent-b".into(),
            },
            audience: "https://gw/mcp/expenses".into(),
            constraints,
            issued_at: 2_000,
            expires_at,
            confirmation: None,
            token_id: "child".into(),
        }
    }

    #[test]
    fn attenuated_grant_cannot_raise_amount_limit() {
        let child = narrow(
            &parent(),
            &request(json!({"limits": [
                {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 5000}
            ]})),
        )
        .unwrap();
        let amount = child
            .limits
            .iter()
            .find(|l| l.pointer == "/amount")
            .unwrap();
        assert_eq!(amount.max, Some(500.0));
        let args = json!({"amount": 600, "category": "travel"});
        let at = 1_795_446_000; // a Monday, 15:00 UTC
        let action = Action {
            tool: "expenses/submit_expense",
            arguments: &args,
            at,
            hints: None,
        };
        assert_eq!(child.evaluate(&action).unwrap_err().code(), "limit_max");
    }

    #[test]
    fn tighter_amount_limit_is_kept() {
        let child = narrow(
            &parent(),
            &request(json!({"limits": [
                {"tool": "expenses/submit_expense", "pointer": "/amount", "max": 100}
            ]})),
        )
        .unwrap();
        let amount = child
            .limits
            .iter()
            .find(|l| l.pointer == "/amount")
            .unwrap();
        assert_eq!(amount.max, Some(100.0));
    }

    #[test]
    fn parent_limits_are_inherited_when_the_request_names_none() {
        let child = narrow(&parent(), &request(json!({}))).unwrap();
        assert_eq!(child.limits, parent().limits);
    }

    #[test]
    fn two_parent_limits_on_one_argument_both_stay_in_force() {
        let parent = constraints(json!({
            "type": "mcp_tools", "tools": ["*"],
            "limits": [
                {"tool": "*", "pointer": "/category", "in": ["travel"]},
                {"tool": "*", "pointer": "/category", "in": ["jewelry"]}
            ]
        }));
        let child = narrow(
            &parent,
            &constraints(json!({"type": "mcp_tools", "tools": ["expenses/list_expenses"]})),
        )
        .unwrap();
        let args = json!({"category": "travel"});
        let action = Action {
            tool: "expenses/list_expenses",
            arguments: &args,
            at: 0,
            hints: None,
        };
        assert!(parent.evaluate(&action).is_err());
        assert!(child.evaluate(&action).is_err());
    }

    #[test]
    fn a_limit_on_a_narrower_tool_does_not_replace_the_parents_wider_one() {
        let parent = constraints(json!({
            "type": "mcp_tools", "tools": ["expenses/*"],
            "limits": [{"tool": "expenses/*", "pointer": "/amount", "max": 500}]
        }));
        let child = narrow(
            &parent,
            &constraints(json!({"type": "mcp_tools", "tools": ["expenses/*"],
                "limits": [{"tool": "expenses/submit", "pointer": "/amount", "max": 100}]})),
        )
        .unwrap();
        let args = json!({"amount": 900});
        let action = Action {
            tool: "expenses/other",
            arguments: &args,
            at: 0,
            hints: None,
        };
        assert_eq!(child.evaluate(&action).unwrap_err().code(), "limit_max");
    }

    #[test]
    fn wider_tool_set_is_refused() {
        let err = narrow(
            &parent(),
            &constraints(json!({"type": "mcp_tools", "tools": ["expenses/*"]})),
        )
        .unwrap_err();
        assert_eq!(err, AttenuationError::ToolWidened("expenses/*".into()));
    }

    #[test]
    fn wider_category_set_is_refused() {
        let err = narrow(
            &parent(),
            &request(json!({"limits": [
                {"tool": "expenses/submit_expense", "pointer": "/category", "in": ["travel", "jewelry"]}
            ]})),
        )
        .unwrap_err();
        assert!(matches!(err, AttenuationError::LimitWidened { .. }));
    }

    #[test]
    fn a_wider_resource_or_prompt_is_refused() {
        let parent = constraints(json!({
            "type": "mcp_tools", "tools": ["expenses/submit_expense"],
            "resources": ["expenses/expenses://reports/*"], "prompts": ["expenses/summary"]
        }));
        let wider = |extra: Value| {
            let mut request = json!({"type": "mcp_tools", "tools": ["expenses/submit_expense"]});
            request
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            narrow(&parent, &constraints(request))
        };
        assert!(wider(json!({"resources": ["expenses/expenses://reports/2026"]})).is_ok());
        assert!(matches!(
            wider(json!({"resources": ["expenses/*"]})),
            Err(AttenuationError::AccessWidened(_))
        ));
        assert!(matches!(
            wider(json!({"prompts": ["expenses/other"]})),
            Err(AttenuationError::AccessWidened(_))
        ));
    }

    #[test]
    fn windows_intersect() {
        let child = narrow(
            &parent(),
            &request(json!({"windows": [
                {"days": ["tue", "wed", "thu"], "start": "12:00", "end": "20:00", "tz": "UTC"}
            ]})),
        )
        .unwrap();
        let raw = serde_json::to_value(&child.windows).unwrap();
        assert_eq!(
            raw,
            json!([{"days": ["tue", "wed"], "start": "12:00", "end": "18:00", "tz": "UTC"}])
        );
    }

    #[test]
    fn window_in_another_time_zone_is_refused() {
        let err = narrow(
            &parent(),
            &request(json!({"windows": [
                {"days": ["mon"], "start": "08:00", "end": "09:00", "tz": "Europe/Paris"}
            ]})),
        )
        .unwrap_err();
        assert!(matches!(err, AttenuationError::WindowWidened(_)));
    }

    #[test]
    fn rate_and_depth_never_grow() {
        let child = narrow(
            &parent(),
            &request(json!({"rate": {"per_hour": 1000}, "max_depth": 9})),
        )
        .unwrap();
        assert_eq!(child.rate, Some(Rate { per_hour: 100 }));
        assert_eq!(child.max_depth, 2);
    }

    #[test]
    fn first_delegation_keeps_depth_and_redelegation_spends_it() {
        let grant = claims(parent(), None);
        let first = attenuate(&grant, delegation(None, 5_000)).unwrap();
        assert_eq!(first.constraints.as_ref().unwrap().max_depth, 2);
        assert_eq!(first.actors.as_ref().unwrap().current().sub, "agent-b");

        let second = attenuate(&first, delegation(None, 5_000)).unwrap();
        assert_eq!(second.constraints.as_ref().unwrap().max_depth, 1);
        assert_eq!(second.actors.as_ref().unwrap().actors().len(), 2);
    }

    #[test]
    fn parent_at_depth_zero_cannot_delegate() {
        let mut c = parent();
        c.max_depth = 0;
        let chain = ActorChain::new(Actor {
            sub: "agent-a".into(),
        });
        let err = attenuate(&claims(c, Some(chain)), delegation(None, 5_000)).unwrap_err();
        assert_eq!(err, AttenuationError::DepthExhausted);
    }

    #[test]
    fn child_never_outlives_parent() {
        let child = attenuate(&claims(parent(), None), delegation(None, 99_999)).unwrap();
        assert_eq!(child.expires_at, 10_000);
    }

    #[test]
    fn child_keeps_user_and_grant_and_names_new_actor_as_client() {
        let child = attenuate(&claims(parent(), None), delegation(None, 5_000)).unwrap();
        assert_eq!(child.subject, "alice");
        assert_eq!(child.grant_id.as_deref(), Some("g1"));
        assert_eq!(child.client_id, "agent-b");
    }

    #[test]
    fn a_child_keeps_the_parents_approval_terms_and_may_not_loosen_them() {
        let mut with_approval = parent().to_raw();
        with_approval.approval = vec![
            serde_json::from_value(json!({"tool": "expenses/submit_expense",
                                          "when": [{"pointer": "/amount", "min": 200}]}))
            .unwrap(),
        ];
        let parent = Constraints::new(with_approval).unwrap();
        // Silent about approval: the parent's term is kept.
        let kept = narrow(&parent, &request(json!({}))).unwrap();
        assert_eq!(kept.approval(), parent.approval());
        // Naming a looser term (a higher threshold) in its place is refused.
        let loosened = request(json!({"approval": [{"tool": "expenses/submit_expense",
                                                     "when": [{"pointer": "/amount", "min": 900}]}]}));
        assert_eq!(
            narrow(&parent, &loosened).unwrap_err(),
            AttenuationError::ApprovalDropped("expenses/submit_expense".into())
        );
        // A stricter one (every amount, four eyes) is taken on top of the parent's.
        let stricter = request(json!({"approval": [{"tool": "expenses/submit_expense",
                                                     "four_eyes": ["carol"]}]}));
        let child = narrow(&parent, &stricter).unwrap();
        assert_eq!(child.approval().len(), 2);
    }

    #[test]
    fn annotation_terms_narrow_and_deny_destructive_is_never_dropped() {
        let parent = constraints(json!({"type": "mcp_tools", "tools": ["expenses/list_*"],
            "read_only": ["k8s/*"], "deny_destructive": true}));
        let child = narrow(
            &parent,
            &constraints(
                json!({"type": "mcp_tools", "read_only": ["k8s/get_*", "expenses/list_*"]}),
            ),
        )
        .unwrap();
        assert!(
            child.deny_destructive(),
            "inherited although the request said nothing"
        );
        assert_eq!(child.read_only().len(), 2);
        let wider = constraints(json!({"type": "mcp_tools", "read_only": ["payroll/*"]}));
        assert!(matches!(
            narrow(&parent, &wider),
            Err(AttenuationError::ToolWidened(_))
        ));
        // A read-only pattern never turns into a full one.
        let promoted = constraints(json!({"type": "mcp_tools", "tools": ["k8s/get_pods"]}));
        assert!(narrow(&parent, &promoted).is_err());
    }
}
