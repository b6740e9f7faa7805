//! Step-up approvals: a person approves one exact call before a gateway forwards it.
//!
//! A gateway that meets a call needing approval ([`portcullis_policy::approval`]) asks here
//! with [`ask`] (`POST /approvals`, the gateway token). One request does everything the
//! gateway needs, atomically:
//!
//! - an approval given for this very call (the same grant, user, actor chain, upstream, tool
//!   and argument digest), still good, is **spent**: marked so inside one conditional update,
//!   so of two gateway replicas retrying at once exactly one gets it;
//! - otherwise the open request for the call is answered `pending` with its page, or a recent
//!   denial `denied` (the agent's retry gets the person's answer, not a new request);
//! - otherwise a new request is opened.
//!
//! The person answers on the approval page ([`page`]), signed in ([`crate::sign_in`]): the
//! user, and for a four-eyes term also one of the named people, never the user twice.
//! Requests lapse after [`PENDING_TTL`], approvals after the term's validity, and revoking
//! the grant (or the user) voids whatever is open or unspent ([`void`]). Every step is in the
//! hash-chained audit log, in the transaction that takes it.

mod page;

use portcullis_policy::approval::{Answer, CallToApprove};
use portcullis_policy::arguments_digest;
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

pub(crate) use self::page::{decide_form, show};
use crate::oauth_error::OAuthError;
use crate::secret::random_token;
use crate::{AppState, audit, metrics};

/// How long a person has to answer a request; a denial is remembered as long.
pub const PENDING_TTL: i64 = 15 * 60;
/// The largest arguments object kept for the page.
const MAX_ARGUMENTS: usize = 256 * 1024;

/// Why a gateway's question or a person's answer was not taken.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The request is malformed (the digest is recomputed from the arguments here).
    #[error("{0}")]
    Invalid(&'static str),
    /// No such approval request.
    #[error("no such approval request")]
    NotFound,
    /// The person signed in may not answer this request.
    #[error("{0}")]
    NotYours(&'static str),
    /// It was answered, spent, expired or voided already.
    #[error("this request is {0} and can no longer be answered")]
    Closed(String),
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<ApprovalError> for OAuthError {
    fn from(error: ApprovalError) -> Self {
        match error {
            ApprovalError::Invalid(reason) => OAuthError::InvalidRequest(reason.into()),
            ApprovalError::NotFound => OAuthError::NotFound("no such approval request".into()),
            ApprovalError::NotYours(_) | ApprovalError::Closed(_) => {
                OAuthError::InvalidRequest(error.to_string())
            }
            ApprovalError::Db(e) => OAuthError::from(e),
        }
    }
}

/// One approval request, as stored.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Its id (the page's address).
    pub id: String,
    /// The grant.
    pub grant_id: String,
    /// The user.
    pub subject: String,
    /// The agents, current actor first (as in `act`).
    pub actors: Vec<String>,
    /// The upstream.
    pub upstream: String,
    /// `upstream/tool`.
    pub tool: String,
    /// The arguments as sent.
    pub arguments: Value,
    /// The second approvers, when four eyes are required.
    pub four_eyes: Option<Vec<String>>,
    /// Seconds an approval is good for.
    pub valid_for: i64,
    /// `pending`, `approved`, `denied`, `spent`, `expired` or `void`.
    pub status: String,
    /// When the request, or once approved the approval, lapses.
    pub expires_at: i64,
    /// The user, once they approved.
    pub approved_by_user: Option<String>,
    /// The second approver, once they approved.
    pub approved_by_second: Option<String>,
}

impl Approval {
    fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let json = |column: &str| -> Result<Value, sqlx::Error> {
            let text: String = row.try_get(column)?;
            serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode {
                index: column.into(),
                source: e.into(),
            })
        };
        let four_eyes: Option<String> = row.try_get("four_eyes")?;
        Ok(Self {
            id: row.try_get("id")?,
            grant_id: row.try_get("grant_id")?,
            subject: row.try_get("subject")?,
            actors: serde_json::from_value(json("actors")?).unwrap_or_default(),
            upstream: row.try_get("upstream")?,
            tool: row.try_get("tool")?,
            arguments: json("arguments")?,
            four_eyes: four_eyes.and_then(|text| serde_json::from_str(&text).ok()),
            valid_for: row.try_get("valid_for")?,
            status: row.try_get("status")?,
            expires_at: row.try_get("expires_at")?,
            approved_by_user: row.try_get("approved_by_user")?,
            approved_by_second: row.try_get("approved_by_second")?,
        })
    }

    /// Whether `who` may still answer: the user until they have, then a named second
    /// approver (never the user) until one has.
    fn role_of(&self, who: &str) -> Option<Role> {
        if who == self.subject {
            return self.approved_by_user.is_none().then_some(Role::User);
        }
        let named = self
            .four_eyes
            .as_ref()
            .is_some_and(|people| people.iter().any(|p| p == who));
        (named && self.approved_by_second.is_none()).then_some(Role::Second)
    }

    fn audit_data(&self) -> Value {
        json!({"approval": self.id, "grant": self.grant_id, "sub": self.subject,
               "act": self.actors, "upstream": self.upstream, "tool": self.tool,
               "arguments_digest": arguments_digest(&self.arguments)})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Second,
}

/// The columns [`Approval::from_row`] reads, for `concat!` into static queries.
macro_rules! columns {
    () => {
        "id, grant_id, subject, actors, upstream, tool, arguments, four_eyes, valid_for, status, \
         expires_at, approved_by_user, approved_by_second"
    };
}
const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM approvals WHERE id = $1");

/// The approval request `id`.
pub async fn get(state: &AppState, id: &str) -> Result<Option<Approval>, sqlx::Error> {
    sqlx::query(SELECT_ONE)
        .bind(id)
        .fetch_optional(state.db.pool())
        .await?
        .map(|row| Approval::from_row(&row))
        .transpose()
}

/// The requests waiting for `who` to answer (as the user, or as a named second approver),
/// newest first.
pub async fn waiting_for(
    state: &AppState,
    who: &str,
    now: i64,
) -> Result<Vec<Approval>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        columns!(),
        " FROM approvals WHERE status = 'pending' AND expires_at > $1
          AND (subject = $2 OR four_eyes LIKE $3) ORDER BY created_at DESC"
    ))
    .bind(now)
    .bind(who)
    .bind(format!(
        "%{}%",
        serde_json::to_string(who).expect("a string serialises")
    ))
    .fetch_all(state.db.pool())
    .await?;
    let mut waiting = Vec::new();
    for row in &rows {
        let approval = Approval::from_row(row)?;
        // The LIKE only narrows; whether this person may still answer is decided exactly.
        if approval.role_of(who).is_some() {
            waiting.push(approval);
        }
    }
    Ok(waiting)
}

/// Answers a gateway about one call: spends an approval of it, or says where it waits.
pub async fn ask(
    state: &AppState,
    request: CallToApprove,
    now: i64,
) -> Result<Answer, ApprovalError> {
    let arguments = match &request.arguments {
        Value::Null => json!({}),
        Value::Object(_) => request.arguments.clone(),
        _ => return Err(ApprovalError::Invalid("arguments must be a JSON object")),
    };
    if arguments.to_string().len() > MAX_ARGUMENTS {
        return Err(ApprovalError::Invalid(
            "arguments are too large to show a person",
        ));
    }
    if request.tool.split_once('/').map(|(up, _)| up) != Some(request.upstream.as_str()) {
        return Err(ApprovalError::Invalid("tool must be named upstream/tool"));
    }
    let digest = arguments_digest(&arguments);
    let actors = serde_json::to_string(&request.act).expect("strings serialise");
    let issuer = state.config.issuer.clone();
    let (answer, outcomes) = state
        .db
        .write(|tx| {
            // Each attempt owns its copies: the future may only borrow the transaction.
            let (request, digest, actors, arguments, issuer) = (
                request.clone(),
                digest.clone(),
                actors.clone(),
                arguments.clone(),
                issuer.clone(),
            );
            Box::pin(async move {
                let mut outcomes = Vec::new();
                let revoked: Option<Option<i64>> =
                    sqlx::query_scalar("SELECT revoked_at FROM grants WHERE id = $1")
                        .bind(&request.grant_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                if !matches!(revoked, Some(None)) {
                    return Ok((Answer::Void, outcomes));
                }
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM approvals
                     WHERE grant_id = $1 AND upstream = $2 AND tool = $3 AND digest = $4
                       AND subject = $5 AND actors = $6
                       AND status IN ('pending', 'approved', 'denied')
                     ORDER BY created_at DESC"
                ))
                .bind(&request.grant_id)
                .bind(&request.upstream)
                .bind(&request.tool)
                .bind(&digest)
                .bind(&request.sub)
                .bind(&actors)
                .fetch_all(&mut **tx)
                .await?;
                let mut waiting = None;
                let mut denied = None;
                for row in &rows {
                    let approval = Approval::from_row(row)?;
                    if approval.expires_at <= now && approval.status != "denied" {
                        set_status(tx, &approval.id, &approval.status, "expired").await?;
                        audit::append(tx, "approval.expired", approval.audit_data(), now).await?;
                        outcomes.push("expired");
                        continue;
                    }
                    match approval.status.as_str() {
                        "approved" => {
                            let spent = sqlx::query(
                                "UPDATE approvals SET status = 'spent', spent_at = $1, spent_by = $2
                                 WHERE id = $3 AND status = 'approved'",
                            )
                            .bind(now)
                            .bind(&request.gateway)
                            .bind(&approval.id)
                            .execute(&mut **tx)
                            .await?;
                            if spent.rows_affected() == 1 {
                                let mut data = approval.audit_data();
                                data["gateway"] = json!(request.gateway);
                                data["token"] = json!(request.token_id);
                                audit::append(tx, "approval.spent", data, now).await?;
                                outcomes.push("spent");
                                return Ok((Answer::Approved { id: approval.id }, outcomes));
                            }
                        }
                        "pending" => {
                            waiting.get_or_insert(approval);
                        }
                        _ if approval.expires_at > now => {
                            denied.get_or_insert(approval);
                        }
                        _ => {}
                    }
                }
                if let Some(approval) = waiting {
                    return Ok((
                        pending(&issuer, &approval.id, approval.expires_at),
                        outcomes,
                    ));
                }
                if let Some(approval) = denied {
                    return Ok((Answer::Denied { id: approval.id }, outcomes));
                }
                let id = random_token(16);
                let expires_at = now + PENDING_TTL;
                sqlx::query(
                    "INSERT INTO approvals
                       (id, grant_id, token_id, subject, actors, upstream, tool, arguments, digest,
                        four_eyes, valid_for, status, created_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'pending', $12, $13)",
                )
                .bind(&id)
                .bind(&request.grant_id)
                .bind(&request.token_id)
                .bind(&request.sub)
                .bind(&actors)
                .bind(&request.upstream)
                .bind(&request.tool)
                .bind(arguments.to_string())
                .bind(&digest)
                .bind(
                    request
                        .requirement
                        .four_eyes
                        .as_ref()
                        .map(|people| json!(people).to_string()),
                )
                .bind(i64::from(request.requirement.valid_for))
                .bind(now)
                .bind(expires_at)
                .execute(&mut **tx)
                .await?;
                audit::append(
                    tx,
                    "approval.requested",
                    json!({"approval": id, "grant": request.grant_id, "token": request.token_id,
                           "sub": request.sub, "act": request.act, "upstream": request.upstream,
                           "tool": request.tool, "arguments_digest": digest,
                           "requirement": request.requirement, "gateway": request.gateway}),
                    now,
                )
                .await?;
                outcomes.push("requested");
                Ok((pending(&issuer, &id, expires_at), outcomes))
            })
        })
        .await?;
    outcomes.into_iter().for_each(metrics::approval);
    Ok(answer)
}

fn pending(issuer: &str, id: &str, expires_at: i64) -> Answer {
    Answer::Pending {
        id: id.to_owned(),
        url: format!("{issuer}/approvals/{id}"),
        expires_at,
    }
}

async fn set_status(
    tx: &mut Transaction<'static, Any>,
    id: &str,
    from: &str,
    to: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE approvals SET status = $1 WHERE id = $2 AND status = $3")
        .bind(to)
        .bind(id)
        .bind(from)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A person's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let this call run once.
    Approve,
    /// Refuse it.
    Deny,
}

/// Records `who`'s answer to request `id`; the request as it stands afterwards.
pub async fn decide(
    state: &AppState,
    id: &str,
    who: &str,
    verdict: Verdict,
    now: i64,
) -> Result<Approval, ApprovalError> {
    let outcome = state
        .db
        .write(|tx| {
            let (id, who) = (id.to_owned(), who.to_owned());
            Box::pin(async move {
                let (id, who) = (id.as_str(), who.as_str());
                let Some(row) = sqlx::query(SELECT_ONE)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?
                else {
                    return Ok(Err(ApprovalError::NotFound));
                };
                let mut approval = Approval::from_row(&row)?;
                if approval.status == "pending" && approval.expires_at <= now {
                    set_status(tx, id, "pending", "expired").await?;
                    audit::append(tx, "approval.expired", approval.audit_data(), now).await?;
                    return Ok(Err(ApprovalError::Closed("expired".into())));
                }
                if approval.status != "pending" {
                    return Ok(Err(ApprovalError::Closed(approval.status)));
                }
                let Some(role) = approval.role_of(who) else {
                    return Ok(Err(ApprovalError::NotYours(if who == approval.subject {
                        "you have approved this call already; it waits for the second approval"
                    } else {
                        "this call is not yours to approve"
                    })));
                };
                let mut data = approval.audit_data();
                data["by"] = json!(who);
                if verdict == Verdict::Deny {
                    sqlx::query(
                        "UPDATE approvals SET status = 'denied', decided_by = $1, decided_at = $2
                         WHERE id = $3 AND status = 'pending'",
                    )
                    .bind(who)
                    .bind(now)
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                    audit::append(tx, "approval.denied", data, now).await?;
                    approval.status = "denied".into();
                    return Ok(Ok((approval, "denied")));
                }
                match role {
                    Role::User => approval.approved_by_user = Some(who.to_owned()),
                    Role::Second => approval.approved_by_second = Some(who.to_owned()),
                }
                let complete = approval.approved_by_user.is_some()
                    && (approval.four_eyes.is_none() || approval.approved_by_second.is_some());
                if complete {
                    approval.status = "approved".into();
                    approval.expires_at = now + approval.valid_for;
                }
                sqlx::query(
                    "UPDATE approvals SET approved_by_user = $1, approved_by_second = $2,
                            status = $3, expires_at = $4, decided_by = $5, decided_at = $6
                     WHERE id = $7 AND status = 'pending'",
                )
                .bind(&approval.approved_by_user)
                .bind(&approval.approved_by_second)
                .bind(&approval.status)
                .bind(approval.expires_at)
                .bind(who)
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                let kind = if complete {
                    "approval.approved"
                } else {
                    "approval.first_approval"
                };
                audit::append(tx, kind, data, now).await?;
                Ok(Ok((
                    approval,
                    if complete {
                        "approved"
                    } else {
                        "first_approval"
                    },
                )))
            })
        })
        .await??;
    let (approval, counted) = outcome;
    metrics::approval(counted);
    Ok(approval)
}

/// What a revocation voids.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Voided<'a> {
    /// Every open or unspent approval of this grant.
    Grant(&'a str),
    /// Every open or unspent approval of this user.
    User(&'a str),
}

/// Voids open requests and unspent approvals, inside the revocation's transaction.
pub(crate) async fn void(
    tx: &mut Transaction<'static, Any>,
    voided: Voided<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let (query, value, data) = match voided {
        Voided::Grant(grant) => (
            "UPDATE approvals SET status = 'void'
             WHERE grant_id = $1 AND status IN ('pending', 'approved')",
            grant,
            json!({"grant": grant}),
        ),
        Voided::User(user) => (
            "UPDATE approvals SET status = 'void'
             WHERE subject = $1 AND status IN ('pending', 'approved')",
            user,
            json!({"sub": user}),
        ),
    };
    let done = sqlx::query(query).bind(value).execute(&mut **tx).await?;
    if done.rows_affected() > 0 {
        let mut data = data;
        data["count"] = json!(done.rows_affected());
        audit::append(tx, "approval.void", data, now).await?;
        metrics::approval("void");
    }
    Ok(())
}
