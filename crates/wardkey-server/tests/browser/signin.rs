//! Sign-in, second factors, the account page and sign-out, as a person does them in
//! Chromium over `http://localhost:PORT`; and forms forged by another site or without the
//! form token, refused.

use crate::harness::{Browser, ForeignSite, Wardkey, enrol_totp, prove_totp, sign_in_password, sign_out};

/// The whole path of a new person: password, first TOTP enrolment (recovery codes kept),
/// sign-out, sign-in with password and TOTP, a second factor added from the account page,
/// a sign-in with a recovery code, sign-out; the same pages on a phone. Each page passes the
/// layout's checks (labels, one h1, skip link first in the tab order, no sideways scroll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_enrols_factors_and_signs_out() {
    let Some(b) = Browser::desktop().await else { return };
    let w = Wardkey::start().await;
    w.person("dr.browser", "Dr Ada Browser").await;

    // First sign-in: the password, then enrolment, which the server requires.
    b.open(&w.url("/login")).await;
    b.expect_page("/login", "Sign in").await;
    b.check_page_basics().await;
    b.screenshot("login").await;
    sign_in_password(&b, &w, "dr.browser").await;
    b.expect_page("/enrol", "Set up a second factor").await;
    b.check_page_basics().await;
    assert!(b.text("header .who").await.contains("Signing in as Dr Ada Browser"), "{}", b.source().await);
    b.screenshot("enrol").await;
    let (key, recovery) = enrol_totp(&b, &w).await;
    assert_eq!(recovery.len(), 10, "recovery codes shown once: {recovery:?}");
    assert!(recovery.iter().all(|c| c.len() >= 8), "{recovery:?}");
    b.check_page_basics().await;
    b.screenshot("enrolled").await;
    b.click("main", "Continue to your account").await;
    b.expect_page("/account", "Your account").await;
    b.check_page_basics().await;
    assert!(b.text("header .who").await.contains("Signed in as Dr Ada Browser"));
    assert_eq!(b.texts("nav[aria-label='Main'] a[aria-current='page']").await, vec!["Your account"]);
    assert_eq!(b.texts("#factors li").await.len(), 1);
    assert!(b.text("main").await.contains("(this one)"));
    sign_out(&b, &w).await;

    // Again, with the password and a code from the app (the next 30-second step: a code is
    // accepted once).
    w.advance(30);
    sign_in_password(&b, &w, "dr.browser").await;
    b.expect_page("/login/second-factor", "Second factor").await;
    b.check_page_basics().await;
    b.screenshot("second-factor").await;
    prove_totp(&b, &w, &key).await;
    b.expect_page("/account", "Your account").await;
    b.screenshot("account").await;

    // A second authenticator from the account page (the sign-in just proved a factor, so no
    // step-up is asked); no new recovery codes.
    b.click("main", "Add a factor").await;
    let (key2, more) = enrol_totp(&b, &w).await;
    assert_ne!(key2, key);
    assert!(more.is_empty(), "recovery codes are shown only with the first factor: {more:?}");
    b.click("main", "Continue to your account").await;
    b.expect_page("/account", "Your account").await;
    assert_eq!(b.texts("#factors li").await.len(), 2, "{}", b.source().await);
    assert!(b.text("main").await.contains("10 recovery codes left"));
    b.screenshot("account-two-factors").await;
    sign_out(&b, &w).await;

    // A recovery code instead of the app.
    sign_in_password(&b, &w, "dr.browser").await;
    b.expect_page("/login/second-factor", "Second factor").await;
    b.fill("Recovery code", &recovery[0]).await;
    b.click("main", "Use recovery code").await;
    b.expect_page("/account", "Your account").await;
    assert!(b.text("main").await.contains("9 recovery codes left"));
    sign_out(&b, &w).await;
    b.close().await;

    // The same pages on a phone, with the second authenticator.
    let Some(p) = Browser::phone().await else { return };
    p.open(&w.url("/login")).await;
    p.expect_page("/login", "Sign in").await;
    p.check_page_basics().await;
    p.screenshot("login").await;
    w.advance(30);
    sign_in_password(&p, &w, "dr.browser").await;
    prove_totp(&p, &w, &key2).await;
    p.expect_page("/account", "Your account").await;
    let width = p.client().execute("return window.innerWidth;", vec![]).await.unwrap();
    assert_eq!(width, serde_json::json!(390), "a phone-sized viewport");
    p.check_page_basics().await;
    p.screenshot("account").await;
    sign_out(&p, &w).await;
    p.close().await;

    assert!(w.events("auth.csrf_refused").await.is_empty(), "no form of ours was refused");
    w.finish().await;
}

/// Forms that did not come from our own page with its token are refused, and change nothing:
/// our own form with the token removed; a form on another site (cross-site, foreign
/// `Origin`); the same from a sandboxed frame (`Origin: null`, `Sec-Fetch-Site: cross-site`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forms_are_refused() {
    let Some(b) = Browser::desktop().await else { return };
    let w = Wardkey::start().await;
    w.person("nurse.victim", "Nurse Victim").await;
    sign_in_password(&b, &w, "nurse.victim").await;
    enrol_totp(&b, &w).await;
    b.open(&w.url("/account")).await;
    b.expect_page("/account", "Your account").await;
    let end_action = b.find("main form[action^='/account/sessions/']").await.attr("action").await.unwrap().unwrap();

    // Our own sign-out form without its token.
    b.client().execute("document.querySelector('header form input[name=csrf]').remove();", vec![]).await.unwrap();
    b.click("header", "Sign out").await;
    b.expect_page("/logout", "Form refused").await;
    b.screenshot("form-refused").await;
    b.open(&w.url("/account")).await;
    b.expect_page("/account", "Your account").await;

    // Another site's form, posting to end the person's session.
    let target = w.url(&end_action);
    let site = ForeignSite::serve(format!(
        "<!doctype html><html lang=en><title>Prize</title><body>\
         <form method=post action=\"{target}\"><input type=hidden name=csrf value=forged><button>Claim your prize</button></form>\
         <iframe sandbox=\"allow-forms\" srcdoc=\"<form method=post action='{logout}'><input type=hidden name=csrf value=forged><button>Framed</button></form>\"></iframe>\
         </body></html>",
        logout = w.url("/logout"),
    ))
    .await;
    b.open(&site.url).await;
    b.click("body", "Claim your prize").await;
    b.expect_page(&end_action, "Form refused").await;

    // The same from a sandboxed frame: an opaque origin.
    b.open(&site.url).await;
    b.client().enter_frame(0).await.unwrap();
    b.click("body", "Framed").await;
    b.client().enter_parent_frame().await.unwrap();

    // Still signed in, the session not ended; three refusals audited, each with its reason.
    b.open(&w.url("/account")).await;
    b.expect_page("/account", "Your account").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let refused = loop {
        let e = w.events("auth.csrf_refused").await;
        if e.len() >= 3 || std::time::Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let mut reasons: Vec<&str> = refused.iter().map(|e| e["reason"].as_str().unwrap_or_default()).collect();
    reasons.sort_unstable();
    assert_eq!(
        reasons,
        vec!["cross-origin form post", "cross-origin form post", "missing or wrong CSRF token"],
        "{refused:?}"
    );
    sign_out(&b, &w).await;
    b.close().await;
    w.finish().await;
}
