//! OAuth discovery for MCP clients: RFC 9728 protected-resource metadata per upstream and per
//! fleet, and the `resource_metadata` parameter of the 401 challenge that points to it.
//!
//! Each upstream and each fleet is its own protected resource, `{public_url}/mcp/{name}`; its
//! metadata lives where RFC 9728 §3.1 puts it, `/.well-known/oauth-protected-resource` inserted
//! between the origin and the path, and its `resource` is exactly the URL clients use (§3.3), so clients
//! accept it. The documents are built with the upstream table, at start and on each reload.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;

use crate::config::RouteTable;

/// Well-known prefix of RFC 9728 metadata.
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Protected-resource metadata for every upstream.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    documents: HashMap<String, Bytes>,
}

fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

/// The metadata URL of the protected resource `resource`, for `WWW-Authenticate`.
pub(crate) fn metadata_url(resource: &str) -> String {
    let (origin, path) = split_origin(resource);
    format!("{origin}{WELL_KNOWN}{path}")
}

impl Discovery {
    /// Builds the documents of the table's upstreams and fleets, naming `issuer` as their
    /// authorization server.
    pub(crate) fn new(table: &RouteTable, issuer: &str) -> Self {
        let mut discovery = Self::default();
        let upstreams = table.upstreams.iter().map(|u| (&u.name, &u.resource));
        let fleets = table.fleets.iter().map(|f| (&f.name, &f.resource));
        for (name, resource) in upstreams.chain(fleets) {
            let (_, path) = split_origin(resource);
            let metadata_path = format!("{WELL_KNOWN}{path}");
            let document = json!({
                "resource": resource,
                "authorization_servers": [issuer],
                "bearer_methods_supported": ["header"],
                "resource_name": name,
                "authorization_details_types_supported": [portcullis_policy::constraint::MCP_TOOLS_TYPE],
                "resource_signing_alg_values_supported": ["EdDSA", "ES256"],
            });
            discovery
                .documents
                .insert(metadata_path, Bytes::from(document.to_string()));
        }
        discovery
    }

    /// The metadata document served at `path`, if any.
    pub(crate) fn document(&self, path: &str) -> Option<&Bytes> {
        self.documents.get(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn metadata_sits_at_the_rfc_9728_location_and_names_the_exact_resource() {
        let config = Config::from_yaml(
            "listen: 127.0.0.1:8080\npublic_url: https://gw.example.com\n\
             issuer: {url: 'https://issuer.example.com'}\n\
             upstreams: [{name: expenses, url: 'http://127.0.0.1:8001/mcp'}]\n",
        )
        .unwrap();
        let discovery = Discovery::new(&config.routes, &config.settings.issuer);
        assert_eq!(
            metadata_url(&config.routes.upstreams[0].resource),
            "https://gw.example.com/.well-known/oauth-protected-resource/mcp/expenses"
        );
        let document: serde_json::Value = serde_json::from_slice(
            discovery
                .document("/.well-known/oauth-protected-resource/mcp/expenses")
                .unwrap(),
        )
        .unwrap();
        assert_eq!(document["resource"], "https://gw.example.com/mcp/expenses");
        assert_eq!(
            document["authorization_servers"][0],
            "https://issuer.example.com"
        );
    }
}
