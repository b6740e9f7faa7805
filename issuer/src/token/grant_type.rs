//! The grant types of the token endpoint, by their wire names (RFC 6749 §4, RFC 8693 §2.1),
//! and the set of them each client may use.
//!
//! One enum serves the endpoint's dispatch, the metadata's `grant_types_supported`, dynamic
//! registration and the metrics label, so a grant type added to one cannot be missing from,
//! or miscounted by, another.
//!
//! Every client has its [`GrantTypes`], stored with it and checked by the token endpoint's
//! dispatch before any grant is served (`unauthorized_client` otherwise):
//!
//! | client | grant types |
//! |---|---|
//! | operator, with a secret (`clients create`, `POST /admin/clients`) | all four |
//! | operator, public (`clients create --public`) | the code flow |
//! | registered itself (RFC 7591) or by metadata document | what it registered: code-flow grants only, `authorization_code` among them; `["authorization_code"]` when it names none (RFC 7591 §2) |
//!
//! One grant type is implied: a client registered for `authorization_code` may use
//! `refresh_token`. RFC 7591 §2 lists the grant types a client "will restrict itself to", and
//! does not say whether `authorization_code` implies refreshing; this issuer answers a code
//! with a refresh token (RFC 6749 §5.1 leaves that to the server), so a client that registered
//! only the RFC 7591 default receives refresh tokens, and may use them. A refresh token only
//! continues the consent its code began (one family, rotated), so it gives such a client
//! nothing the code flow did not. The stored set stays as registered, which is what
//! registration answers and the admin API lists; [`GrantTypes::permits`] alone adds the
//! implication.

/// A grant type the token endpoint serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    /// `authorization_code`: a code from consent, bound by PKCE.
    AuthorizationCode,
    /// `refresh_token`: the next token of a consent's refresh family.
    RefreshToken,
    /// `client_credentials`: an agent's own token, its `actor_token`.
    ClientCredentials,
    /// RFC 8693 token exchange: a delegation token.
    TokenExchange,
}

impl GrantType {
    /// Every grant type, in the order the metadata lists them.
    pub const ALL: [GrantType; 4] = [
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
        GrantType::TokenExchange,
    ];

    /// The `grant_type` parameter's value.
    pub const fn wire_name(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }

    /// The grant type named `name` on the wire, if it is one we serve.
    pub fn from_wire(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.wire_name() == name)
    }

    /// The `grant_type` label of the token metrics: short and fixed (the URN would be neither).
    pub const fn metric_label(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::TokenExchange => "token_exchange",
        }
    }

    /// Whether it belongs to the authorization-code flow: the only grants public and
    /// dynamically registered clients may use, since PKCE and refresh rotation protect only
    /// that flow.
    pub const fn is_code_flow(self) -> bool {
        match self {
            GrantType::AuthorizationCode | GrantType::RefreshToken => true,
            GrantType::ClientCredentials | GrantType::TokenExchange => false,
        }
    }
}

/// The grant types one client may use at the token endpoint, in [`GrantType::ALL`] order,
/// each once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTypes(Vec<GrantType>);

/// Why a client's own list of grant types (RFC 7591 `grant_types`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantTypesError {
    /// A grant type a self-registered client may not use, or one this issuer does not serve.
    #[error("grant type {0} is not available to registered clients")]
    Unavailable(String),
    /// No `authorization_code`, although `code` is the only response type (RFC 7591 §2.1).
    #[error("grant_types must include authorization_code, the grant of the code response type")]
    NoAuthorizationCode,
}

/// A stored list of grant types this issuer cannot read; the client is then not read at all,
/// never with fewer or more grant types than were stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored grant types {stored:?} are not a JSON list of grant types this issuer serves")]
pub struct UnreadableGrantTypes {
    /// The stored text.
    pub stored: String,
}

impl GrantTypes {
    fn of(granted: impl Fn(GrantType) -> bool) -> Self {
        Self(GrantType::ALL.into_iter().filter(|g| granted(*g)).collect())
    }

    /// Every grant type: an agent an operator registered with a secret.
    pub fn all() -> Self {
        Self::of(|_| true)
    }

    /// The authorization-code flow and its refresh tokens: a public client an operator
    /// registered, which proves nothing about itself outside PKCE and rotation.
    pub fn code_flow() -> Self {
        Self::of(GrantType::is_code_flow)
    }

    /// The grant types a client asked for in its registration or metadata document
    /// (`grant_types`, RFC 7591 §2; `["authorization_code"]` when absent): code-flow grants
    /// only, the code grant among them.
    pub fn self_registered(requested: Option<&[String]>) -> Result<Self, GrantTypesError> {
        let Some(requested) = requested else {
            return Ok(Self::of(|g| g == GrantType::AuthorizationCode));
        };
        let mut wanted = Vec::with_capacity(requested.len());
        for name in requested {
            match GrantType::from_wire(name).filter(|g| g.is_code_flow()) {
                Some(grant) => wanted.push(grant),
                None => return Err(GrantTypesError::Unavailable(name.clone())),
            }
        }
        if !wanted.contains(&GrantType::AuthorizationCode) {
            return Err(GrantTypesError::NoAuthorizationCode);
        }
        Ok(Self::of(|g| wanted.contains(&g)))
    }

    /// Whether the token endpoint serves `grant` to this client: registered, or `refresh_token`
    /// for a client registered for `authorization_code` (see the module doc).
    pub fn permits(&self, grant: GrantType) -> bool {
        self.0.contains(&grant)
            || (grant == GrantType::RefreshToken && self.0.contains(&GrantType::AuthorizationCode))
    }

    /// The grant types as registered.
    pub fn iter(&self) -> impl Iterator<Item = GrantType> + '_ {
        self.0.iter().copied()
    }

    /// The stored form: a JSON list of wire names.
    pub fn to_stored(&self) -> String {
        serde_json::to_string(&self).expect("strings serialise")
    }

    /// Reads the stored form; a name this issuer does not know fails the read rather than
    /// being dropped (a client must never quietly gain or lose a grant type).
    pub fn from_stored(text: &str) -> Result<Self, UnreadableGrantTypes> {
        let unreadable = || UnreadableGrantTypes {
            stored: text.to_owned(),
        };
        let names: Vec<String> = serde_json::from_str(text).map_err(|_| unreadable())?;
        let stored = names
            .iter()
            .map(|name| GrantType::from_wire(name).ok_or_else(unreadable))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(|g| stored.contains(&g)))
    }
}

impl serde::Serialize for GrantTypes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter().map(GrantType::wire_name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grant_type_is_found_by_its_wire_name() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::from_wire(grant.wire_name()), Some(grant));
        }
        assert_eq!(GrantType::from_wire("password"), None);
    }

    #[test]
    fn every_grant_type_is_counted_under_a_label_of_its_own() {
        let mut labels: Vec<_> = GrantType::ALL.map(GrantType::metric_label).to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), GrantType::ALL.len());
        assert!(!labels.contains(&"other"));
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn a_client_that_names_no_grant_types_is_registered_for_codes_and_may_refresh() {
        let registered = GrantTypes::self_registered(None).unwrap();
        assert_eq!(
            registered.iter().collect::<Vec<_>>(),
            [GrantType::AuthorizationCode]
        );
        assert!(registered.permits(GrantType::AuthorizationCode));
        assert!(registered.permits(GrantType::RefreshToken));
        assert!(!registered.permits(GrantType::ClientCredentials));
        assert!(!registered.permits(GrantType::TokenExchange));
    }

    #[test]
    fn a_self_registered_client_cannot_ask_for_grants_outside_the_code_flow() {
        for other in [
            "client_credentials",
            GrantType::TokenExchange.wire_name(),
            "password",
        ] {
            assert_eq!(
                GrantTypes::self_registered(Some(&names(&["authorization_code", other]))),
                Err(GrantTypesError::Unavailable(other.to_owned()))
            );
        }
        assert_eq!(
            GrantTypes::self_registered(Some(&names(&["refresh_token"]))),
            Err(GrantTypesError::NoAuthorizationCode)
        );
        assert_eq!(
            GrantTypes::self_registered(Some(&[])),
            Err(GrantTypesError::NoAuthorizationCode)
        );
    }

    #[test]
    fn only_a_code_grant_implies_refreshing() {
        let operator = GrantTypes::all();
        assert!(GrantType::ALL.into_iter().all(|g| operator.permits(g)));
        let public = GrantTypes::code_flow();
        assert!(
            GrantType::ALL
                .into_iter()
                .all(|g| public.permits(g) == g.is_code_flow())
        );
        let refresh_only = GrantTypes::of(|g| g == GrantType::RefreshToken);
        assert!(!refresh_only.permits(GrantType::AuthorizationCode));
        let agent = GrantTypes::of(|g| g == GrantType::ClientCredentials);
        assert!(!agent.permits(GrantType::RefreshToken));
    }

    #[test]
    fn the_stored_form_round_trips_and_an_unknown_name_fails_the_read() {
        let registered = GrantTypes::self_registered(Some(&names(&[
            "refresh_token",
            "authorization_code",
            "refresh_token",
        ])))
        .unwrap();
        assert_eq!(
            registered.to_stored(),
            r#"["authorization_code","refresh_token"]"#
        );
        for set in [registered, GrantTypes::all(), GrantTypes::code_flow()] {
            assert_eq!(GrantTypes::from_stored(&set.to_stored()), Ok(set));
        }
        assert!(GrantTypes::from_stored(r#"["authorization_code","implicit"]"#).is_err());
        assert!(GrantTypes::from_stored("authorization_code").is_err());
    }
}
