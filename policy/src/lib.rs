//! The pure core of Portcullis: delegation tokens for AI agents.
//!
//! A delegation token is a JWT access token (RFC 9068) that says *who* (`sub`, the user), *through
//! whom* (`act`, the chain of agents, RFC 8693) and *what*: an RFC 9396 `authorization_details`
//! entry of type `mcp_tools` naming tools, argument limits, time windows, a rate and how many more
//! re-delegations are allowed. This crate holds everything about those tokens that needs no I/O:
//!
//! - [`claims`] and [`constraint`]: the wire formats and their validated forms;
//! - [`verify`]: a strict verifier that turns a compact JWS into a [`VerifiedToken`];
//! - [`decision`]: [`authorize`], which judges a tool call and names the rule that refused it;
//! - [`approval`]: calls a person must approve first, bound to one call's arguments;
//! - [`attenuate`](mod@attenuate): deriving a child token that never exceeds its parent;
//! - [`sign`](mod@sign) and [`key`]: signing keys, verifying keys and JWKs;
//! - [`revocation`]: what a revocation covers, checking tokens against a set, the signed feed;
//! - [`strict_json`]: JSON parsing that refuses duplicate keys.
//!
//! It does not fetch keys, store revocations, count calls for rate limits or read the clock:
//! callers pass in key sets, the current time and their own state. That keeps it usable as the
//! SDK for a resource server that wants to enforce delegation tokens itself:
//!
//! ```
//! use portcullis_policy::{Action, ActorRule, Decision, Expected, KeySet, Verifier, authorize};
//! # fn demo(jwks: &portcullis_policy::JwkSet, token: &str, now: i64) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::new("https://issuer.example", KeySet::from_jwks(jwks)?);
//! let token = verifier.verify(token, &Expected {
//!     audience: "https://gw.example/mcp/expenses",
//!     now,
//!     actor: ActorRule::Required,
//! })?;
//! let args = serde_json::json!({"amount": 120, "category": "travel"});
//! match authorize(&token, &Action { tool: "expenses/submit_expense", arguments: &args, at: now, hints: None }) {
//!     Decision::Permit(permit) => println!("allowed by grant {:?}", permit.grant_id()),
//!     Decision::NeedsApproval(wait) => println!("ask a person to approve {}", wait.tool()),
//!     Decision::Deny(reason) => println!("denied: {reason}"),
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod approval;
pub mod attenuate;
pub mod claims;
pub mod constraint;
pub mod decision;
pub mod dpop;
pub mod freeze;
mod jws;
pub mod key;
pub mod revocation;
pub mod sign;
pub mod strict_json;
pub mod verify;

pub use approval::{Requirement, arguments_digest};
pub use attenuate::{AttenuationError, DelegationRequest, attenuate, narrow};
pub use claims::{Actor, ActorChain, Claims, ClaimsError, RawClaims};
pub use constraint::{
    ApprovalTerm, ConstraintError, Constraints, Limit, Rate, ResourcePattern, ToolPattern, Window,
};
pub use decision::{
    Access, Action, ApprovalNeeded, Decision, DenyReason, Permit, ToolHints, authorize,
    authorize_access,
};
pub use dpop::{DpopError, Expectation, Proof, ProofRequest, create_proof, verify_proof};
pub use key::{Algorithm, Jwk, JwkSet, KeyError, KeySet, SigningKey, VerifyingKey};
pub use revocation::{RevocationEntry, RevocationKind, RevokedSet};
pub use sign::{TOKEN_TYPE, sign, sign_client_assertion};
pub use verify::{ActorRule, Expected, VerifiedToken, Verifier, VerifyError};
