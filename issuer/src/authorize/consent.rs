//! What a person can give and what they gave.
//!
//! The offer is their allowance narrowed by what the agent asked for; the approval is the
//! offer with only the tools they ticked, narrowed against the offer again, which proves it
//! within the offer rather than trusting the form.

use portcullis_policy::{Constraints, narrow};

use crate::authorize::error::{AuthorizeError, Refusal};
use crate::authorize::pending::Pending;
use crate::users::User;

/// What `user` can give this request: their allowance narrowed by what the agent asked.
pub(crate) fn offer(user: &User, pending: &Pending) -> Result<Constraints, AuthorizeError> {
    let request = &pending.request;
    if !user.resources.contains(&request.resource) {
        return Err(pending.refuse(Refusal::ResourceNotAllowed {
            username: user.username.clone(),
            resource: request.resource.clone(),
        }));
    }
    match &request.requested {
        None => Ok(user.authorization_details.clone()),
        Some(requested) => narrow(&user.authorization_details, requested).map_err(|source| {
            pending.refuse(Refusal::AsksTooMuch {
                username: user.username.clone(),
                source,
            })
        }),
    }
}

/// The offer with only the `chosen` tools.
pub(crate) fn approve(
    offered: &Constraints,
    chosen: &[&str],
    pending: &Pending,
    username: &str,
) -> Result<Constraints, AuthorizeError> {
    if chosen.is_empty() {
        return Err(pending.refuse(Refusal::NoToolApproved {
            username: username.to_owned(),
        }));
    }
    let mut narrowed = offered.to_raw();
    if let Some(unknown) = chosen
        .iter()
        .find(|t| !narrowed.tools.iter().any(|p| p.as_str() == **t))
    {
        return Err(AuthorizeError::NotOnOffer((*unknown).to_owned()));
    }
    narrowed.tools.retain(|p| chosen.contains(&p.as_str()));
    // Fewer tools of the offer is always within it; narrowing again proves it.
    let approved = Constraints::new(narrowed).map_err(AuthorizeError::ApprovalInvalid)?;
    narrow(offered, &approved).map_err(AuthorizeError::ApprovalWider)
}
