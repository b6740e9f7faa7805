//! `fleets:`: each entry names existing upstreams whose namespaced tool names (`member__tool`)
//! split one way only, under a resource of its own.

use std::sync::Arc;

use super::raw::RawFleet;
use super::{ConfigError, invalid, valid_name};
use crate::fleet::Fleet;
use crate::upstream::Upstream;

/// Validates every fleet over `upstreams`.
pub(super) fn fleets(
    raw: Vec<RawFleet>,
    upstreams: &[Arc<Upstream>],
    public_url: &str,
) -> Result<Vec<Arc<Fleet>>, ConfigError> {
    let mut fleets: Vec<Arc<Fleet>> = Vec::with_capacity(raw.len());
    for (i, fleet) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("fleets[{i}].{f}");
        if !valid_name(&fleet.name) {
            return Err(invalid(
                field("name"),
                "use 1-64 characters of [A-Za-z0-9_.-]",
            ));
        }
        if upstreams.iter().any(|u| u.name == fleet.name)
            || fleets.iter().any(|f| f.name == fleet.name)
        {
            return Err(invalid(
                field("name"),
                format!("{:?} already names an upstream or fleet", fleet.name),
            ));
        }
        let resource = fleet
            .resource
            .unwrap_or_else(|| format!("{public_url}/mcp/{}", fleet.name));
        if upstreams.iter().any(|u| u.resource == resource)
            || fleets.iter().any(|f| f.resource == resource)
        {
            return Err(invalid(
                field("resource"),
                format!("{resource:?} is used twice"),
            ));
        }
        if fleet.members.is_empty() {
            return Err(invalid(field("members"), "name at least one upstream"));
        }
        let mut members: Vec<Arc<Upstream>> = Vec::with_capacity(fleet.members.len());
        for (j, name) in fleet.members.iter().enumerate() {
            let field = field(&format!("members[{j}]"));
            let upstream = upstreams
                .iter()
                .find(|u| u.name == *name)
                .ok_or_else(|| invalid(&field, format!("no upstream is named {name:?}")))?;
            if members.iter().any(|m| m.name == *name) {
                return Err(invalid(field, format!("{name:?} is listed twice")));
            }
            if !crate::fleet::valid_member_name(name) {
                return Err(invalid(
                    field,
                    format!(
                        "{name:?} contains \"__\" or ends in \"_\": its namespaced tool \
                         names could be read two ways"
                    ),
                ));
            }
            if upstream.auth == crate::upstream::DownstreamAuth::OAuth {
                return Err(invalid(
                    field,
                    format!(
                        "{name:?} takes each person's own account (oauth), which a fleet \
                         does not carry to its members"
                    ),
                ));
            }
            members.push(upstream.clone());
        }
        fleets.push(Arc::new(Fleet {
            name: fleet.name,
            resource,
            members,
        }));
    }
    Ok(fleets)
}
