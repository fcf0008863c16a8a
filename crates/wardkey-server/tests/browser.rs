#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Wardkey's pages in a real headless Chromium, driven over WebDriver: what a person does
//! in a browser, against the real server. The harness (`browser/harness.rs`) is shared by
//! every page's tests; each area of the console adds a module here.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them). Without them
//! these tests are skipped loudly, or fail when `WARDKEY_REQUIRE_BROWSER=1` (as in CI).
//! `WARDKEY_BROWSER_SHOTS=DIR` keeps the screenshots.

#[path = "browser/harness.rs"]
mod harness;
#[path = "browser/signin.rs"]
mod signin;
