//! The account page: a person's grants and the approvals waiting for them.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;

use super::{Links, Shown};
use crate::approvals::Approval;
use crate::page::{escape, page, when};
use crate::sign_in::{self, SignedIn};

fn grant_card(shown: &Shown, person: &SignedIn, now: i64) -> String {
    let grant = &shown.grant;
    let terms: String = grant
        .authorization_details
        .describe()
        .iter()
        .map(|line| format!("<li>{}</li>", escape(line)))
        .collect();
    let resources: Vec<String> = grant
        .resources
        .iter()
        .map(|r| format!("<code>{}</code>", escape(r)))
        .collect();
    let active = grant.is_active(now);
    let action = if active {
        format!(
            "<form class=\"revoke-grant\" method=\"post\" action=\"/account/grants/{id}/revoke\">\
             <input type=\"hidden\" name=\"form_token\" value=\"{token}\">\
             <button type=\"submit\">Revoke</button> <small>ends its live calls at every \
             gateway now</small></form>",
            id = escape(&grant.id),
            token = escape(&person.form_token),
        )
    } else if let Some(at) = grant.revoked_at {
        format!("<p><b>Revoked</b> {}</p>", when(at))
    } else {
        format!("<p><b>Expired</b> {}</p>", when(grant.expires_at))
    };
    let last_used = shown
        .delegations
        .iter()
        .map(|(_, at)| *at)
        .max()
        .map_or_else(|| "never".to_owned(), when);
    let chains: String = shown
        .delegations
        .iter()
        .map(|(chain, at)| {
            let agents: Vec<String> = chain
                .iter()
                .map(|a| format!("<code>{}</code>", escape(a)))
                .collect();
            // The last agent of a delegated chain is a sub-agent: its branch can go alone.
            let button = match chain.last() {
                Some(sub) if shown.revoked_branches.contains(sub) => " <b>revoked</b>".to_owned(),
                Some(sub) if active && chain.len() > 1 => format!(
                    "<form method=\"post\" action=\"/account/grants/{id}/branches/{agent}/revoke\">\
                     <input type=\"hidden\" name=\"form_token\" value=\"{token}\">\
                     <button type=\"submit\">Revoke {name}</button></form>",
                    id = escape(&grant.id),
                    agent = escape(
                        &form_urlencoded::byte_serialize(sub.as_bytes()).collect::<String>()
                    ),
                    token = escape(&person.form_token),
                    name = escape(sub),
                ),
                _ => String::new(),
            };
            format!(
                "<li>{} <small>last {}</small>{button}</li>",
                agents.join(" → "),
                when(*at)
            )
        })
        .collect();
    let tree = if chains.is_empty() {
        String::new()
    } else {
        format!("<h3>Acting under it</h3><ul class=\"chains\">{chains}</ul>")
    };
    format!(
        "<section class=\"grant\" id=\"grant-{id}\"><h2>{agent} <small><code>{client}</code></small></h2>\
         <dl><dt>At</dt><dd>{resources}</dd><dt>Given</dt><dd>{created}</dd>\
         <dt>Until</dt><dd>{expires}</dd><dt>Last used</dt><dd>{last_used}</dd>\
         <dt>Grant</dt><dd><code>{id}</code></dd></dl>\
         <ul>{terms}</ul>{tree}{action}</section>",
        id = escape(&grant.id),
        agent = escape(&shown.agent),
        client = escape(&grant.client_id),
        resources = resources.join(", "),
        created = when(grant.created_at),
        expires = when(grant.expires_at),
    )
}

pub(super) fn render(
    person: &SignedIn,
    (shown, waiting, links): (&[Shown], &[Approval], &Links),
    revoked: Option<&str>,
    now: i64,
) -> Response {
    let notice = revoked.map_or_else(String::new, |id| {
        format!(
            "<p class=\"ok\" role=\"status\">Grant <code>{}</code> is revoked: the gateways \
             end its live calls and refuse the next ones.</p>",
            escape(id)
        )
    });
    let waiting_list = if waiting.is_empty() {
        String::new()
    } else {
        let items: String = waiting
            .iter()
            .map(|a| {
                let mut arguments = a.arguments.to_string();
                if arguments.len() > 80 {
                    let cut = (0..=77)
                        .rev()
                        .find(|i| arguments.is_char_boundary(*i))
                        .unwrap_or(0);
                    arguments.truncate(cut);
                    arguments.push('…');
                }
                format!(
                    "<li><a href=\"/approvals/{id}\">{tool}</a> <code>{arguments}</code> \
                     for {agents}, until {until}</li>",
                    id = escape(&a.id),
                    tool = escape(&a.tool),
                    arguments = escape(&arguments),
                    agents = escape(
                        &a.actors
                            .iter()
                            .rev()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                    until = when(a.expires_at),
                )
            })
            .collect();
        format!("<h2>Waiting for your approval</h2><ul id=\"waiting\">{items}</ul>")
    };
    let (active, past): (Vec<&Shown>, Vec<&Shown>) =
        shown.iter().partition(|s| s.grant.is_active(now));
    let cards =
        |list: &[&Shown]| -> String { list.iter().map(|s| grant_card(s, person, now)).collect() };
    let active_html = if active.is_empty() {
        "<p>You have given no agent a grant that is in force.</p>".to_owned()
    } else {
        cards(&active)
    };
    let past_html = if past.is_empty() {
        String::new()
    } else {
        format!(
            "<details><summary>Past grants ({})</summary>{}</details>",
            past.len(),
            cards(&past)
        )
    };
    let links_html = if links.linked.is_empty() && links.unlinked.is_empty() {
        String::new()
    } else {
        let linked: String = links
            .linked
            .iter()
            .map(|(resource, linked_at)| {
                format!(
                    "<li><code>{resource}</code>, linked {when} \
                     <form method=\"post\" action=\"/account/links/unlink\" class=\"inline\">\
                     <input type=\"hidden\" name=\"resource\" value=\"{resource}\">\
                     <input type=\"hidden\" name=\"form_token\" value=\"{token}\">\
                     <button type=\"submit\">Unlink</button></form></li>",
                    resource = escape(resource),
                    when = when(*linked_at),
                    token = escape(&person.form_token),
                )
            })
            .collect();
        let unlinked: String = links
            .unlinked
            .iter()
            .map(|resource| {
                format!(
                    "<li><code>{shown}</code>, not linked: <a href=\"{href}\">link your \
                     account</a></li>",
                    shown = escape(resource),
                    href = escape(&crate::upstream_links::link_url("", resource)),
                )
            })
            .collect();
        format!(
            "<h2>Your accounts at upstreams</h2><p>Your agents' calls there go as you, with \
             these accounts.</p><ul id=\"links\">{linked}{unlinked}</ul>"
        )
    };
    let body = format!(
        "{notice}{waiting_list}<h2>What your agents may do</h2>{active_html}{past_html}\
         {links_html}{sign_out}",
        sign_out = sign_in::sign_out_button(&person.username),
    );
    let mut response = page(StatusCode::OK, "Your delegations", &body);
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Cookie"));
    response
}
