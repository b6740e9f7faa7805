//! The console page: what was done, the freezes in force, the authority graph, and the
//! decision stream's filters and first lines (the script adds the live ones).

use super::feed::{Filter, Line};
use super::graph::{ACTIVE_WINDOW, GrantNode, Graph};
use crate::freezes::Freeze;
use crate::page::{escape, when};
use crate::sign_in::SignedIn;

/// Everything the page shows.
pub(super) struct View<'a> {
    pub(super) person: &'a SignedIn,
    pub(super) graph: &'a Graph,
    pub(super) freezes: &'a [Freeze],
    pub(super) lines: &'a [Line],
    /// The audit sequence number the stream continues after.
    pub(super) head: i64,
    pub(super) filter: &'a Filter,
    pub(super) done: Option<&'a str>,
    pub(super) now: i64,
}

/// A one-button form posting `fields` (name, value) to `action`.
fn button(view: &View<'_>, action: &str, fields: &[(&str, &str)], label: &str) -> String {
    let hidden: String = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            )
        })
        .collect();
    format!(
        "<form class=\"inline\" method=\"post\" action=\"{action}\">{hidden}\
         <input type=\"hidden\" name=\"form_token\" value=\"{token}\">\
         <button type=\"submit\">{label}</button></form>",
        token = escape(&view.person.form_token),
        label = escape(label),
    )
}

fn revoke_button(view: &View<'_>, kind: &str, value: &str, label: &str) -> String {
    button(
        view,
        "/console/revoke",
        &[("kind", kind), ("value", value)],
        label,
    )
}

fn freezes(view: &View<'_>) -> String {
    let rows: String = view
        .freezes
        .iter()
        .map(|f| {
            format!(
                "<tr><td><code>{pattern}</code></td><td>{reason}</td><td>{by}</td><td>{at}</td>\
                 <td>{lift}</td></tr>",
                pattern = escape(f.pattern.as_str()),
                reason = escape(&f.reason),
                by = escape(&f.created_by),
                at = when(f.created_at),
                lift = button(
                    view,
                    "/console/freezes/lift",
                    &[("pattern", f.pattern.as_str())],
                    "Lift"
                ),
            )
        })
        .collect();
    let table = if rows.is_empty() {
        "<p>No freeze is in force.</p>".to_owned()
    } else {
        format!(
            "<div class=\"scroll\"><table id=\"freezes\"><thead><tr><th>Tools</th><th>Why</th>\
             <th>By</th><th>Since</th><th></th></tr></thead><tbody>{rows}</tbody></table></div>"
        )
    };
    format!(
        "<h2>Change freezes</h2>{table}\
         <form id=\"freeze\" method=\"post\" action=\"/console/freezes\">\
         <input type=\"hidden\" name=\"form_token\" value=\"{token}\">\
         <p><label>Tools <input name=\"pattern\" placeholder=\"k8s/*delete*\" required \
         pattern=\"[A-Za-z0-9_./*-]+\"></label> \
         <label>Why <input name=\"reason\" placeholder=\"release window\" required></label> \
         <button type=\"submit\">Freeze</button></p>\
         <p><small>Every gateway refuses each call of a matching tool (<code>upstream/tool</code>, \
         <code>*</code> for any run of characters) within a second, until lifted.</small></p></form>",
        token = escape(&view.person.form_token),
    )
}

fn grant_node(view: &View<'_>, node: &GrantNode) -> String {
    let grant = &node.grant;
    let terms = grant.authorization_details.describe().join("; ");
    let chains: String = node
        .chains
        .iter()
        .filter(|c| c.agents.len() > 1 || c.acting_at.is_some())
        .map(|chain| {
            let names: Vec<String> = chain
                .agents
                .iter()
                .map(|a| format!("<code>{}</code>", escape(a)))
                .collect();
            let acting = match chain.acting_at {
                Some(at) => format!(" <span class=\"badge\">acting · {}</span>", when(at)),
                None => String::new(),
            };
            let branch = match chain.agents.last() {
                Some(sub) if node.revoked_branches.contains(sub) => " <b>revoked</b>".to_owned(),
                Some(sub) if chain.agents.len() > 1 => revoke_button(
                    view,
                    "branch",
                    &portcullis_policy::revocation::branch(&grant.id, sub),
                    &format!("Revoke branch {sub}"),
                ),
                _ => String::new(),
            };
            format!(
                "<li>{} <small>delegated {}</small>{acting}{branch}</li>",
                names.join(" → "),
                when(chain.delegated_at)
            )
        })
        .collect();
    let chains = if chains.is_empty() {
        String::new()
    } else {
        format!("<ul>{chains}</ul>")
    };
    format!(
        "<li class=\"grant\" id=\"grant-{id}\"><b>{agent}</b> <code>{client}</code> at {resources}\
         {revoke_grant}{revoke_agent}<br><small>{terms} · expires {expires}</small>{chains}</li>",
        id = escape(&grant.id),
        agent = escape(&node.agent),
        client = escape(&grant.client_id),
        resources = grant
            .resources
            .iter()
            .map(|r| format!("<code>{}</code>", escape(r)))
            .collect::<Vec<_>>()
            .join(", "),
        revoke_grant = revoke_button(view, "grant", &grant.id, "Revoke grant"),
        revoke_agent = revoke_button(view, "agent", &grant.client_id, "Revoke agent"),
        terms = escape(&terms),
        expires = when(grant.expires_at),
    )
}

fn graph(view: &View<'_>) -> String {
    let people: String = view
        .graph
        .iter()
        .map(|(user, grants)| {
            let grants: String = grants.iter().map(|g| grant_node(view, g)).collect();
            format!(
                "<li class=\"person\"><b>{name}</b>{revoke}<ul>{grants}</ul></li>",
                name = escape(user),
                revoke = revoke_button(view, "user", user, "Revoke user"),
            )
        })
        .collect();
    let body = if people.is_empty() {
        "<p>No grant is active.</p>".to_owned()
    } else {
        format!("<ul id=\"graph\">{people}</ul>")
    };
    format!(
        "<h2>Who may act for whom</h2><p><small>Active grants by user, the sub-agent chains \
         under each, and the chains a gateway decided a call of in the last {} minutes \
         (<span class=\"badge\">acting</span>).</small></p>{body}",
        ACTIVE_WINDOW / 60
    )
}

fn stream(view: &View<'_>) -> String {
    let filter = view.filter;
    let text = |name: &str, label: &str, value: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" value=\"{}\" size=\"12\"></label>",
            escape(value)
        )
    };
    let outcomes: String = [
        "",
        "allow",
        "deny",
        "revoked",
        "frozen",
        "lifted",
        "approval",
        "delegated",
        "change",
    ]
    .iter()
    .map(|o| {
        let selected = if *o == filter.outcome {
            " selected"
        } else {
            ""
        };
        let label = if o.is_empty() { "any" } else { o };
        format!("<option value=\"{o}\"{selected}>{label}</option>")
    })
    .collect();
    let rows: String = view
        .lines
        .iter()
        .map(|l| {
            format!(
                "<tr class=\"{outcome}\" data-seq=\"{seq}\"><td>{time}</td><td class=\"outcome\">\
                 {outcome}</td><td>{user}</td><td>{agents}</td><td>{upstream}</td><td>{what}</td>\
                 <td>{detail}</td><td>{gateway}</td></tr>",
                outcome = l.outcome,
                seq = l.seq,
                time = escape(&l.time),
                user = escape(&l.user),
                agents = escape(&l.agents.join(" → ")),
                upstream = escape(&l.upstream),
                what = escape(&l.what),
                detail = escape(&l.detail),
                gateway = escape(&l.gateway),
            )
        })
        .collect();
    format!(
        "<h2 id=\"decisions\">Decisions <small id=\"live\" aria-live=\"polite\">as of loading</small></h2>\
         <form class=\"filters\" method=\"get\" action=\"/console\">{user}{agent}{upstream}\
         <label>Outcome <select name=\"outcome\">{outcomes}</select></label>\
         <button type=\"submit\">Filter</button></form>\
         <div class=\"scroll\"><table><thead><tr><th>Time (UTC)</th><th>Outcome</th><th>User</th>\
         <th>Agents</th><th>Upstream</th><th>What</th><th>Rule or reason</th><th>Gateway</th></tr>\
         </thead><tbody id=\"stream\" data-head=\"{head}\">{rows}</tbody></table></div>",
        user = text("user", "User", &filter.user),
        agent = text("agent", "Agent", &filter.agent),
        upstream = text("upstream", "Upstream", &filter.upstream),
        head = view.head,
    )
}

/// The page's body.
pub(super) fn render(view: &View<'_>) -> String {
    let done = view.done.map_or_else(String::new, |d| {
        format!("<p class=\"ok\" role=\"status\">{}</p>", escape(d))
    });
    format!(
        "<div class=\"who\">Signed in as <b>{name}</b>, operator · <a href=\"/account\">your \
         account</a> · <a href=\"/docs\">admin API</a> \
         <form class=\"inline\" method=\"post\" action=\"/sign-out\">\
         <button type=\"submit\">Sign out</button></form></div>{done}{freezes}{graph}{stream}\
         <p><small>As of {now}.</small></p>",
        name = escape(&view.person.username),
        freezes = freezes(view),
        graph = graph(view),
        stream = stream(view),
        now = when(view.now),
    )
}
