//! Debian's headless Chromium driven through chromedriver (WebDriver, by `fantoccini`):
//! a fresh profile per browser, no background networking (the test machine's network is
//! closed), stopped by its process group with the test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::{Proc, eventually, free_port};

pub struct Browser {
    pub client: Client,
    shots: PathBuf,
    driver: Proc,
}

impl Browser {
    /// A new Chromium under a new chromedriver; screenshots go to `shots`.
    pub async fn start(dir: &Path, what: &str, shots: &Path) -> Self {
        let port = free_port();
        let profile = dir.join(format!("{what}-profile"));
        std::fs::create_dir_all(&profile).unwrap();
        std::fs::create_dir_all(shots).unwrap();
        let driver = Proc::start(
            dir,
            &format!("{what}-chromedriver"),
            // Its own process group, which its Chromium joins: see `Drop`.
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .process_group(0),
            false,
        );
        let status = format!("http://127.0.0.1:{port}/status");
        eventually("chromedriver ready", Duration::from_secs(20), || {
            Command::new("curl")
                .args(["-sf", "-m", "2", &status])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("\"ready\":true"))
        });
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            client,
            shots: shots.to_owned(),
            driver,
        }
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no {css} on the page: {err}"))
            .click()
            .await
            .unwrap();
    }

    /// The text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits until the page's text contains `wanted`, reloading between looks when
    /// `reload` (figures the server fills in later).
    pub async fn wait_for_text(&self, wanted: &str, reload: bool) {
        self.wait_for_text_in("body", wanted, reload).await;
    }

    /// Waits until the text of the first element matching `css` contains `wanted`.
    pub async fn wait_for_text_in(&self, css: &str, wanted: &str, reload: bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.text(css).await;
            if body.contains(wanted) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{wanted:?} not on the page within 20 s; it says:\n{body}"
            );
            if reload {
                self.client.refresh().await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Saves the page as `NAME.png` in the screenshots folder.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    /// Stopping chromedriver mid-session (a test that panicked) leaves the Chromium it
    /// started running; the group chromedriver leads holds exactly what it started.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.pid())])
            .status();
    }
}
