//! The browser test harness: the real server, a real headless Chromium driven over WebDriver
//! (chromedriver, through `fantoccini`), and the steps a person takes through the pages.
//! Later page tests (access requests, approvals, reviews) reuse all of it:
//!
//! - [`Wardkey::start`]: the server in-process on a free port, reached as
//!   `http://localhost:PORT` like the README's default, with a clock the test moves; an admin
//!   token to set people up over the API; [`Wardkey::person`], [`Wardkey::totp`],
//!   [`Wardkey::events`].
//! - [`Browser::desktop`] / [`Browser::phone`]: a Chromium session; `None` after a loud
//!   "BROWSER TESTS SKIPPED" when Chromium is missing, or a failure when
//!   `WARDKEY_REQUIRE_BROWSER=1` (CI).
//! - Page steps: [`Browser::open`], [`Browser::fill`], [`Browser::click`],
//!   [`Browser::expect_page`], [`Browser::screenshot`], [`Browser::check_page_basics`].
//! - Flows: [`sign_in_password`], [`enrol_totp`], [`prove_totp`], [`sign_out`].
//! - [`ForeignSite`]: a page on another origin, for forged-form tests.
//!
//! Screenshots go to `WARDKEY_BROWSER_SHOTS` when set (to look at them), else a temporary
//! directory; a failed expectation saves one named after the step and prints the page.

use chrono::{DateTime, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wardkey_domain::ManualClock;
use wardkey_server::{RunningServer, ServerConfig};
use wardkey_service::Services;
use wardkey_store::Store;

/// The password people get in these tests.
pub const PASSWORD: &str = "correct horse battery staple 1987";

/// A port nobody listens on now (the listener is closed at once; the server or chromedriver
/// binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("local addr").port()
}

// ----------------------------------------------------------------------------- the server

/// The real Wardkey server on SQLite in a temporary directory (pages do not depend on the
/// backend; the API suites cover both stores).
pub struct Wardkey {
    server: Option<RunningServer>,
    pub services: Services,
    /// `http://localhost:PORT`: the origin browsers see, and the configured public origin.
    pub base: String,
    admin: String,
    http: reqwest::Client,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

impl Wardkey {
    pub async fn start() -> Wardkey {
        let dir = tempfile::tempdir().expect("tempdir");
        // The clock starts at the real time (cookies and TOTP codes look ordinary) and only
        // moves when the test says so: a code is not replayed by accident, sessions do not
        // time out while a slow machine runs the browser.
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let store = Store::open_sqlite_dir(dir.path(), clock.clone()).await.expect("sqlite store");
        store.set_signer(wardkey_audit::LogSigner::from_seed("wardkey/browser", [3; 32]).expect("signer"));
        let port = free_port();
        let base = format!("http://localhost:{port}");
        let mut settings = wardkey_service::AuthnSettings {
            // Cheaper Argon2 keeps sign-ins fast; every other setting is the default.
            hash_params: wardkey_authn::hash::HashParams { m_cost_kib: 4096, t_cost: 1, p_cost: 1 },
            ..Default::default()
        };
        settings.passkeys.rp_origin = base.clone();
        settings.passkeys.rp_id = "localhost".into();
        let key = wardkey_authn::secretbox::SecretKey::from_bytes([5; 32]);
        let services = Services::with_authn(store, wardkey_service::ServiceConfig::default(), settings, key)
            .expect("authn settings");
        let admin = services.bootstrap().await.expect("bootstrap").expect("first start issues a token");
        let config = ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], port)), ..ServerConfig::default() };
        let server = wardkey_server::spawn(config, services.clone()).await.expect("server starts");
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Wardkey { server: Some(server), services, base, admin, http, clock, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The server's time.
    pub fn now(&self) -> DateTime<Utc> {
        wardkey_domain::Clock::now(self.clock.as_ref())
    }

    pub fn advance(&self, secs: i64) {
        self.clock.advance(chrono::Duration::seconds(secs));
    }

    /// A call to the admin API (bootstrap token); panics unless it succeeds.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method.clone(), self.url(path)).bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("admin request");
        let status = r.status();
        let text = r.text().await.expect("admin response");
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("json") }
    }

    /// An active person who can sign in with [`PASSWORD`] (created, identity verified,
    /// activated, password set); returns the user id.
    pub async fn person(&self, username: &str, display_name: &str) -> String {
        use reqwest::Method;
        let u = self
            .admin(Method::POST, "/api/v1/users", Some(json!({ "username": username, "display_name": display_name })))
            .await;
        let uid = u["id"].as_str().expect("user id").to_owned();
        let v = u["version"].as_i64().expect("version");
        self.admin(
            Method::POST,
            &format!("/api/v1/users/{uid}/verify-identity"),
            Some(json!({ "version": v, "method": "in_person" })),
        )
        .await;
        self.admin(
            Method::POST,
            &format!("/api/v1/users/{uid}/status"),
            Some(json!({ "version": v + 1, "status": "active" })),
        )
        .await;
        self.admin(
            Method::POST,
            &format!("/api/v1/users/{uid}/password"),
            Some(json!({ "password": PASSWORD, "must_change": false })),
        )
        .await;
        uid
    }

    /// The current code for a base32 TOTP key, computed by `totp-rs` (an implementation
    /// independent of Wardkey's) at the server's time.
    pub fn totp(&self, base32: &str) -> String {
        let bytes =
            data_encoding::BASE32_NOPAD.decode(base32.trim().trim_end_matches('=').as_bytes()).expect("base32 key");
        let t = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_skew(0)
            .with_step_duration(30)
            .with_secret(bytes)
            .build()
            .expect("totp-rs accepts the key");
        t.generate(self.now().timestamp() as u64).to_string()
    }

    /// Audit events with `action`, oldest first.
    pub async fn events(&self, action: &str) -> Vec<Value> {
        self.services.sync_audit_queue().await;
        let r = self.admin(reqwest::Method::GET, &format!("/api/v1/audit/events?action={action}"), None).await;
        r["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn finish(mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await.expect("clean shutdown");
        }
    }
}

// ----------------------------------------------------------------------------- the browser

/// chromedriver and Chromium, from `WARDKEY_CHROMEDRIVER` / `WARDKEY_CHROMIUM` or the PATH
/// (Debian's `chromium-driver` and `chromium`).
fn browser_tools() -> Result<(PathBuf, PathBuf), String> {
    fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(env).map(PathBuf::from) {
            return p.is_file().then_some(p);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).flat_map(|d| names.iter().map(move |n| d.join(n))).find(|p| p.is_file())
    }
    let driver = find("WARDKEY_CHROMEDRIVER", &["chromedriver"])
        .ok_or("chromedriver not found (apt-get install chromium-driver, or set WARDKEY_CHROMEDRIVER)")?;
    let chromium = find("WARDKEY_CHROMIUM", &["chromium", "chromium-browser", "google-chrome"])
        .ok_or("Chromium not found (apt-get install chromium, or set WARDKEY_CHROMIUM)")?;
    Ok((driver, chromium))
}

/// A chromedriver process in its own process group, so that dropping it (a failed test
/// included) also ends the Chromium it started.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start(path: &Path, log: &Path) -> Driver {
        use std::os::unix::process::CommandExt as _;
        let port = free_port();
        let log = std::fs::File::create(log).expect("chromedriver log");
        let child = Command::new(path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen on port {port} within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the browser it started (by the group's id, which
        // is chromedriver's pid).
        let _ = Command::new("kill").arg("-KILL").arg(format!("-{}", self.child.id())).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `WARDKEY_BROWSER_SHOTS`, else a fresh temporary directory.
fn shots_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("WARDKEY_BROWSER_SHOTS") {
        Some(d) => {
            let d = PathBuf::from(d);
            std::fs::create_dir_all(&d).expect("screenshot directory");
            (d, None)
        }
        None => {
            let t = tempfile::tempdir().expect("tempdir");
            (t.path().to_owned(), Some(t))
        }
    }
}

/// One Chromium session (its own profile: cookies are not shared between sessions).
pub struct Browser {
    client: Option<Client>,
    pub name: &'static str,
    shots: PathBuf,
    _shots_tmp: Option<tempfile::TempDir>,
    _profile: tempfile::TempDir,
    _driver: Driver,
}

impl Browser {
    /// A desktop window (1280×900).
    pub async fn desktop() -> Option<Browser> {
        Browser::launch("desktop", json!({})).await
    }

    /// A phone: a 390 px wide viewport at device pixel ratio 2 with a phone user agent,
    /// through Chromium's mobile emulation.
    pub async fn phone() -> Option<Browser> {
        Browser::launch(
            "phone",
            json!({ "mobileEmulation": { "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 2.0, "touch": true } } }),
        )
        .await
    }

    async fn launch(name: &'static str, extra: Value) -> Option<Browser> {
        let (driver_path, chromium) = match browser_tools() {
            Ok(t) => t,
            Err(why) => {
                if std::env::var("WARDKEY_REQUIRE_BROWSER").as_deref() == Ok("1") {
                    panic!("browser tests need Chromium and WARDKEY_REQUIRE_BROWSER=1: {why}");
                }
                eprintln!("!!! BROWSER TESTS SKIPPED: {why}");
                return None;
            }
        };
        let profile = tempfile::tempdir().expect("profile dir");
        let (shots, shots_tmp) = shots_dir();
        let driver = Driver::start(&driver_path, &profile.path().join("chromedriver.log"));
        let mut options = json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                // Root in CI containers: Chromium's sandbox needs user namespaces it may lack.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().join("chromium").display()),
                "--no-first-run",
                "--no-default-browser-check",
                // Nothing but the pages under test: no calls home, no updates, no sync.
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--disable-domain-reliability",
                "--disable-client-side-phishing-detection",
                "--no-pings",
                "--password-store=basic",
                "--lang=en-US",
            ],
            "prefs": { "credentials_enable_service": false, "profile.password_manager_enabled": false },
        });
        if let (Some(o), Some(e)) = (options.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| panic!("a Chromium session through chromedriver: {e}"));
        Some(Browser { client: Some(client), name, shots, _shots_tmp: shots_tmp, _profile: profile, _driver: driver })
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("an open session")
    }

    pub async fn open(&self, url: &str) {
        self.client().goto(url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        self.client().current_url().await.expect("current url").path().to_owned()
    }

    /// The page source, for failure messages.
    pub async fn source(&self) -> String {
        self.client().source().await.unwrap_or_default()
    }

    /// Saves a screenshot named `<browser>-<name>.png` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client().screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("{}-{name}.png", self.name));
        std::fs::write(&path, png).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Fails the test with a screenshot and the page's source.
    pub async fn fail(&self, step: &str, why: &str) -> ! {
        let shot = self.screenshot(&format!("failed-{}", step.replace(|c: char| !c.is_alphanumeric(), "-"))).await;
        panic!("{step}: {why}\nscreenshot: {}\npage source:\n{}", shot.display(), self.source().await);
    }

    /// Waits (up to 10 s) for the page at `path` whose `<h1>` is `heading`.
    pub async fn expect_page(&self, path: &str, heading: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now_path = self.path().await;
            let h1 = match self.client().find(Locator::Css("h1")).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if now_path == path && h1.trim() == heading {
                return;
            }
            if Instant::now() > deadline {
                self.fail(heading, &format!("expected {path} \"{heading}\", at {now_path} \"{h1}\"")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client().find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => self.fail(css, &format!("no element {css}: {e}")).await,
        }
    }

    /// Types `text` into the field labelled by the `<label>` whose text is `label` (found
    /// through the label, so an unlabelled field fails the test).
    pub async fn fill(&self, label: &str, text: &str) {
        let for_id = self
            .client()
            .execute(
                "for (const l of document.querySelectorAll('label')) { if (l.textContent.trim() === arguments[0]) return l.htmlFor; } return null;",
                vec![json!(label)],
            )
            .await
            .expect("find label");
        let Some(id) = for_id.as_str().filter(|s| !s.is_empty()) else {
            self.fail(label, &format!("no <label> \"{label}\" with a for=")).await;
        };
        let field = self.find(&format!("#{id}")).await;
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type");
    }

    /// Clicks the button (or link) whose visible text is `text`, inside `within` (CSS).
    pub async fn click(&self, within: &str, text: &str) {
        let found = self
            .client()
            .execute(
                "const root = document.querySelector(arguments[0]); if (!root) return null; \
                 for (const e of root.querySelectorAll('button, a')) { if (e.textContent.trim() === arguments[1]) { e.setAttribute('data-wk-click', '1'); return true; } } return null;",
                vec![json!(within), json!(text)],
            )
            .await
            .expect("find button");
        if found.is_null() {
            self.fail(text, &format!("no button or link \"{text}\" in {within}")).await;
        }
        let el = self.find("[data-wk-click='1']").await;
        let _ = self
            .client()
            .execute("document.querySelector(\"[data-wk-click='1']\").removeAttribute('data-wk-click')", vec![])
            .await;
        el.click().await.unwrap_or_else(|e| panic!("click {text}: {e}"));
    }

    /// The text of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut out = Vec::new();
        for e in self.client().find_all(Locator::Css(css)).await.expect("find all") {
            out.push(e.text().await.expect("text").trim().to_owned());
        }
        out
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text").trim().to_owned()
    }

    /// Checks what every Wardkey page must have, in the page as the browser built it: a
    /// language, a viewport for phones, one `<h1>`, a skip link to `<main>` that the first Tab
    /// reaches, a label for every field and a name for every button, no horizontal scrolling,
    /// and our stylesheet applied.
    pub async fn check_page_basics(&self) {
        let problems = self
            .client()
            .execute(
                r#"const p = [];
                if (!document.documentElement.lang) p.push('no lang on <html>');
                if (!document.querySelector('meta[name=viewport][content*="width=device-width"]')) p.push('no viewport meta');
                if (document.querySelectorAll('h1').length !== 1) p.push('not exactly one h1');
                const skip = document.querySelector('a.skip');
                if (!skip || skip.getAttribute('href') !== '#main' || !document.getElementById('main')) p.push('no skip link to #main');
                for (const i of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
                  if (!i.labels || i.labels.length === 0) p.push('unlabelled field ' + (i.id || i.name));
                }
                for (const b of document.querySelectorAll('button')) {
                  if (!(b.getAttribute('aria-label') || b.textContent.trim())) p.push('button without a name');
                }
                if (document.documentElement.scrollWidth > window.innerWidth + 1) p.push('scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + window.innerWidth);
                if (getComputedStyle(document.body).backgroundColor === 'rgba(0, 0, 0, 0)') p.push('stylesheet not applied');
                return p;"#,
                vec![],
            )
            .await
            .expect("page checks");
        let problems: Vec<String> = serde_json::from_value(problems).expect("list");
        if !problems.is_empty() {
            self.fail("page-basics", &problems.join("; ")).await;
        }
        // Keyboard: the first Tab lands on the skip link.
        self.client()
            .execute("document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);", vec![])
            .await
            .expect("blur");
        self.find("body").await.send_keys(&fantoccini::key::Key::Tab.to_string()).await.expect("tab");
        let first = self.client().execute("return document.activeElement.className;", vec![]).await.expect("focus");
        if first != json!("skip") {
            self.fail("focus-order", &format!("the first Tab focused {first}, not the skip link")).await;
        }
        // Leave the page as it was (the skip link shows only while focused).
        let _ = self.client().execute("document.activeElement && document.activeElement.blur();", vec![]).await;
    }

    /// Ends the WebDriver session (Chromium exits), then chromedriver.
    pub async fn close(mut self) {
        if let Some(c) = self.client.take() {
            let _ = c.close().await;
        }
    }
}

// ----------------------------------------------------------------------------- flows

/// Signs in with username and [`PASSWORD`] on `/login`; the caller checks where it lands.
pub async fn sign_in_password(b: &Browser, w: &Wardkey, username: &str) {
    b.open(&w.url("/login")).await;
    b.expect_page("/login", "Sign in").await;
    b.fill("Username", username).await;
    b.fill("Password", PASSWORD).await;
    b.click("main", "Sign in").await;
}

/// On `/enrol`: sets up an authenticator app, reading the key the page shows and typing the
/// code `totp-rs` computes. Returns the key and the recovery codes (empty unless this was
/// the first factor).
pub async fn enrol_totp(b: &Browser, w: &Wardkey) -> (String, Vec<String>) {
    b.expect_page("/enrol", "Set up a second factor").await;
    b.click("main", "Set up an authenticator app").await;
    b.expect_page("/enrol/totp", "Set up an authenticator app").await;
    let qr = b.find("img.qr").await.attr("src").await.expect("src").unwrap_or_default();
    assert!(qr.starts_with("data:image/svg+xml;base64,"), "QR code image: {qr}");
    let key = b.text("main code").await;
    b.fill("Enter the 6-digit code the app shows", &w.totp(&key)).await;
    b.click("main", "Confirm").await;
    b.expect_page("/enrol/totp/confirm", "Second factor enrolled").await;
    let codes = b.texts("#recovery-codes code").await;
    (key, codes)
}

/// On `/login/second-factor`: types the current code for `key`.
pub async fn prove_totp(b: &Browser, w: &Wardkey, key: &str) {
    b.expect_page("/login/second-factor", "Second factor").await;
    b.fill("6-digit code", &w.totp(key)).await;
    b.click("main", "Verify").await;
}

/// Signs out with the header's button and checks that the account page is closed.
pub async fn sign_out(b: &Browser, w: &Wardkey) {
    b.click("header", "Sign out").await;
    b.expect_page("/login", "Sign in").await;
    b.open(&w.url("/account")).await;
    b.expect_page("/login", "Sign in").await;
}

// ----------------------------------------------------------------------------- another site

/// A page served from another origin (`http://127.0.0.1:PORT`, another site than
/// `localhost`), for forged cross-site form posts.
pub struct ForeignSite {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl ForeignSite {
    pub async fn serve(html: String) -> ForeignSite {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let app = axum::Router::new().route("/", axum::routing::get(move || async move { axum::response::Html(html) }));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        ForeignSite { url, stop: Some(tx) }
    }
}

impl Drop for ForeignSite {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
