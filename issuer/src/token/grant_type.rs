//! The grant types of the token endpoint, by their wire names (RFC 6749 §4, RFC 8693 §2.1).
//!
//! One enum serves the endpoint's dispatch, the metadata's `grant_types_supported`, dynamic
//! registration and the metrics label, so a grant type added to one cannot be missing from,
//! or miscounted by, another.

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
}
