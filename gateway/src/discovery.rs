//! OAuth discovery for MCP clients: RFC 9728 protected-resource metadata per upstream, and the
//! `resource_metadata` parameter of the 401 challenge that points to it.
//!
//! Each upstream is its own protected resource, `{public_url}/mcp/{name}`; its metadata lives
//! where RFC 9728 §3.1 puts it, `/.well-known/oauth-protected-resource` inserted between the
//! origin and the path, and its `resource` is exactly the URL clients use (§3.3), so clients
//! accept it. The documents are built once, at start.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::json;

use crate::config::Config;

/// Well-known prefix of RFC 9728 metadata.
pub const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// Protected-resource metadata for every upstream.
#[derive(Debug, Default)]
pub struct Discovery {
    documents: HashMap<String, Bytes>,
    metadata_urls: Vec<String>,
}

fn split_origin(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => url.split_at(after_scheme + i),
        None => (url, ""),
    }
}

impl Discovery {
    /// Builds the documents of `config`'s upstreams.
    pub fn new(config: &Config) -> Self {
        let mut discovery = Self::default();
        for upstream in &config.upstreams {
            let (origin, path) = split_origin(&upstream.resource);
            let metadata_path = format!("{WELL_KNOWN}{path}");
            let document = json!({
                "resource": upstream.resource,
                "authorization_servers": [config.issuer],
                "bearer_methods_supported": ["header"],
                "resource_name": upstream.name,
                "authorization_details_types_supported": [portcullis_policy::constraint::MCP_TOOLS_TYPE],
                "resource_signing_alg_values_supported": ["EdDSA", "ES256"],
            });
            discovery
                .metadata_urls
                .push(format!("{origin}{metadata_path}"));
            discovery
                .documents
                .insert(metadata_path, Bytes::from(document.to_string()));
        }
        discovery
    }

    /// The metadata document served at `path`, if any.
    pub fn document(&self, path: &str) -> Option<&Bytes> {
        self.documents.get(path)
    }

    /// The metadata URL of upstream `index`, for `WWW-Authenticate`.
    pub fn metadata_url(&self, index: usize) -> Option<&str> {
        self.metadata_urls.get(index).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_sits_at_the_rfc_9728_location_and_names_the_exact_resource() {
        let config = Config::from_yaml(
            "listen: 127.0.0.1:8080\npublic_url: https://gw.example.com\n\
             issuer: {url: 'https://issuer.example.com'}\n\
             upstreams: [{name: expenses, url: 'http://127.0.0.1:8001/mcp'}]\n",
        )
        .unwrap();
        let discovery = Discovery::new(&config);
        assert_eq!(
            discovery.metadata_url(0),
            Some("https://gw.example.com/.well-known/oauth-protected-resource/mcp/expenses")
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
