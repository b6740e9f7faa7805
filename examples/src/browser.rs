//! A real browser for the tests of the pages people use: Debian's Chromium, headless, driven
//! over WebDriver by its ChromeDriver (both installed by `scripts/test.sh`).
//!
//! Chromium starts with a fresh profile and without background networking, so it talks only
//! to the loopback pages a test opens.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// Where the browser and its driver are, when installed.
pub fn installed() -> Option<(PathBuf, PathBuf)> {
    let chromium = PathBuf::from(std::env::var_os("PORTCULLIS_CHROMIUM")?);
    let driver = PathBuf::from(std::env::var_os("PORTCULLIS_CHROMEDRIVER")?);
    (chromium.exists() && driver.exists()).then_some((chromium, driver))
}

/// A headless Chromium and its driver; both end when this is dropped.
#[derive(Debug)]
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and opens a session in a new profile.
    pub async fn start(
        chromium: &std::path::Path,
        driver: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let port = crate::stack::free_port()?.port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", driver.display()))?;
        let profile = tempfile::tempdir()?;
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=900,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("an object literal")
        };
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    return Ok(Self {
                        client,
                        _driver: child,
                        _profile: profile,
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        bail!("ChromeDriver did not start a session at {url}")
    }
}

/// Saves a screenshot of what `page` shows as `docs/screenshots/{name}`, where the test run
/// leaves its pictures of the issuer's pages.
pub async fn shoot(page: &Client, name: &str) -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), page.screenshot().await?)?;
    Ok(())
}

/// Signs in as `who` on the issuer's sign-in page the browser is at (or is being sent to).
pub async fn sign_in(page: &Client, who: &str, password: &str) -> anyhow::Result<()> {
    page.wait()
        .for_element(Locator::Css("input[name=username]"))
        .await?
        .send_keys(who)
        .await?;
    page.find(Locator::Css("input[name=password]"))
        .await?
        .send_keys(password)
        .await?;
    page.find(Locator::Css("button[type=submit]"))
        .await?
        .click()
        .await?;
    Ok(())
}
