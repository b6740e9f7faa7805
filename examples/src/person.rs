//! A person at the issuer's pages, over plain HTTP: signs in, reads an approval request, and
//! approves or denies it, as a browser would (the session cookie, the form and its token).
//!
//! The demo narrates these steps and the tests use them for the cases a real browser would
//! only make slower (four eyes, denials, expiry); the acceptance test drives Chromium
//! through the same pages ([`crate::browser`]).

use anyhow::{Context, bail};
use portcullis_issuer::{StorageOptions, users};
use portcullis_policy::Constraints;
use reqwest::header;
use serde_json::json;

/// Creates `username` with `password` in the user store of the issuer whose data directory is
/// `data_dir` (SQLite), allowed every tool at `resource`; a user of that name already there is
/// left as it is.
pub async fn create_user(
    data_dir: &std::path::Path,
    username: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<()> {
    let db = user_store(data_dir).await?;
    let allowance =
        Constraints::from_authorization_details(&[json!({"type": "mcp_tools", "tools": ["*"]})])?;
    match users::create(
        &db,
        users::NewUser {
            username,
            password,
            resources: vec![resource.to_owned()],
            allowance,
            operator: false,
        },
        portcullis_issuer::now(),
    )
    .await
    {
        Ok(_) | Err(users::UserError::Exists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Makes `username` an operator: they may open the console (`/console`).
pub async fn make_operator(data_dir: &std::path::Path, username: &str) -> anyhow::Result<()> {
    let db = user_store(data_dir).await?;
    users::set_operator(&db, username, true, portcullis_issuer::now()).await?;
    Ok(())
}

async fn user_store(data_dir: &std::path::Path) -> anyhow::Result<portcullis_issuer::db::Database> {
    Ok(portcullis_issuer::open_database(&StorageOptions {
        data_dir: data_dir.to_owned(),
        database_url: None,
        key_encryption_secret: None,
    })
    .await?)
}

/// A signed-in person.
#[derive(Debug, Clone)]
pub struct Person {
    issuer: String,
    cookie: String,
    http: reqwest::Client,
}

/// The page's answer to an approve or deny.
#[derive(Debug, Clone)]
pub struct Answered {
    /// HTTP status: 200 when taken, 409 when refused (not this person's, already closed).
    pub status: u16,
    /// The page, as HTML.
    pub page: String,
}

impl Person {
    /// Signs `username` in at the issuer `issuer`.
    pub async fn sign_in(issuer: &str, username: &str, password: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let response = http
            .post(format!("{issuer}/sign-in"))
            .form(&[
                ("username", username),
                ("password", password),
                ("next", "/"),
            ])
            .send()
            .await?;
        if response.status() != reqwest::StatusCode::SEE_OTHER {
            bail!("signing in {username}: {}", response.status());
        }
        let cookie = response
            .headers()
            .get(header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("no session cookie")?
            .to_owned();
        Ok(Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            cookie,
            http,
        })
    }

    /// The approval page of request `id`.
    pub async fn page(&self, id: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/approvals/{id}", self.issuer))
            .header(header::COOKIE, &self.cookie)
            .send()
            .await?;
        Ok(response.error_for_status()?.text().await?)
    }

    /// Approves (`true`) or denies request `id` with the page's own form.
    pub async fn answer(&self, id: &str, approve: bool) -> anyhow::Result<Answered> {
        let page = self.page(id).await?;
        let token = form_token(&page).context("the page offers no form to this person")?;
        let decision = if approve { "approve" } else { "deny" };
        let response = self
            .http
            .post(format!("{}/approvals/{id}", self.issuer))
            .header(header::COOKIE, &self.cookie)
            .form(&[("form_token", token.as_str()), ("decision", decision)])
            .send()
            .await?;
        Ok(Answered {
            status: response.status().as_u16(),
            page: response.text().await?,
        })
    }
}

impl Person {
    /// `GET` of an issuer URL (absolute, or a path) with the person's session, redirects not
    /// followed.
    pub async fn get(&self, url: &str) -> anyhow::Result<reqwest::Response> {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.issuer)
        } else {
            url.to_owned()
        };
        Ok(self
            .http
            .get(url)
            .header(header::COOKIE, &self.cookie)
            .send()
            .await?)
    }

    /// Submits a form of the account page (`/account`): `fields` and the page's form token.
    pub async fn account_form(&self, action: &str, fields: &[(&str, &str)]) -> anyhow::Result<u16> {
        let page = self
            .get("/account")
            .await?
            .error_for_status()?
            .text()
            .await?;
        let token = form_token(&page).context("the account page offers no form")?;
        let mut form = fields.to_vec();
        form.push(("form_token", token.as_str()));
        let response = self
            .http
            .post(format!("{}{action}", self.issuer))
            .header(header::COOKIE, &self.cookie)
            .form(&form)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }
}

/// The form token in a page, if it has a form.
fn form_token(page: &str) -> Option<String> {
    let marker = "name=\"form_token\" value=\"";
    let start = page.find(marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_owned())
}
