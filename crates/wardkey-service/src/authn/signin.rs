//! Sign-in, first step: username and password, throttling and lockout, the new session.

use super::*;
use wardkey_audit::Action;

impl Services {
    // ----------------------------------------------------------------- sign-in

    /// First step: username and password. `password` is raw bytes (an HTML form may send
    /// anything); it is never logged.
    pub async fn login_password(
        &self,
        username: &str,
        password: &[u8],
        meta: RequestMeta,
        user_agent: Option<String>,
    ) -> Result<SignIn> {
        self.check_source(&meta, "sign-in").await?;
        let rt = self.authn();
        if password.len() > wardkey_authn::hash::MAX_PASSWORD_BYTES {
            return Err(ServiceError::invalid(
                "password",
                format!("at most {} bytes", wardkey_authn::hash::MAX_PASSWORD_BYTES),
            ));
        }
        let Ok(password) = std::str::from_utf8(password) else {
            return Err(ServiceError::invalid("password", "the password is not valid UTF-8 text"));
        };
        let username = username.trim();
        let now = self.clock().now();
        let (user, phc, failures) = if username.is_empty() || username.len() > MAX_USERNAME_BYTES {
            (None, None, LoginFailures::default())
        } else {
            let mut r = self.store.read().await?;
            match r.get_user_by_username(username).await? {
                None => (None, None, LoginFailures::default()),
                Some(u) => {
                    let phc = r.get_password(u.id).await?.map(|(_, phc)| phc);
                    let f = r.get_login_failures(u.id).await?;
                    (Some(u), phc, f)
                }
            }
        };
        let acct = failures_from_domain(&failures);
        let throttled = acct.earliest_next_attempt(&rt.settings.lockout).is_some_and(|t| now < t);
        let locked = acct.is_locked(&rt.settings.lockout, now);
        // One Argon2 verification on every path, so timing does not tell the cases apart.
        let verified = rt.hasher.verify_or_dummy(password.to_owned(), phc.clone()).await;
        let reason = match &user {
            None => Some("unknown user"),
            Some(_) if phc.is_none() => Some("no password set"),
            Some(_) if locked => Some("account locked"),
            Some(_) if throttled => Some("too soon after a failure"),
            Some(_) if !verified => Some("wrong password"),
            Some(u) if u.status != UserStatus::Active => Some(match u.status {
                UserStatus::PendingVerification => "account pending identity verification",
                UserStatus::Suspended => "account suspended",
                _ => "account disabled",
            }),
            Some(_) => None,
        };
        let Some(user) = user else {
            let mut e = anon_event(Action::AuthLoginFailed, &meta, Outcome::Failure);
            e.reason = reason.map(str::to_owned);
            // Never the text itself: people type passwords into the username field. A keyed
            // hash of its compared form still lets attempts on one name be correlated
            // (spraying), and cannot be reversed or confirmed by guessing without the key.
            let hashed =
                rt.secrets.keyed_hash(UNKNOWN_USERNAME_HASH, wardkey_domain::username_lookup_key(username).as_bytes());
            e.details = json!({ "username_hmac": hashed, "step": "password" });
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::LoginFailed);
        };
        if let Some(reason) = reason {
            // Wrong passwords count towards lockout; attempts refused for other reasons
            // (locked, throttled, inactive) are recorded but do not extend the count unless
            // the password was also wrong.
            let count = !verified;
            let lockout = rt.settings.lockout;
            let uid = user.id;
            let uname = truncate(username, 64);
            let meta2 = meta.clone();
            self.store
                .write(move |tx| {
                    Box::pin(async move {
                        let mut acct = failures_from_domain(&tx.get_login_failures(uid).await?);
                        let mut e = user_event(uid, Action::AuthLoginFailed, &meta2, Outcome::Failure);
                        e.actor = Actor::Anonymous.principal();
                        e.reason = Some(reason.to_owned());
                        let mut details = json!({ "username": uname, "step": "password" });
                        if count {
                            let outcome = acct.record_failure(&lockout, tx.now());
                            tx.set_login_failures(uid, &failures_to_domain(&acct)).await?;
                            details["consecutive_failures"] = json!(acct.consecutive);
                            e.details = details;
                            tx.audit(e);
                            if outcome.locked_now {
                                let mut l = user_event(uid, Action::AuthLockout, &meta2, Outcome::Success);
                                l.actor = "system:lockout".into();
                                l.reason = Some(format!("{} consecutive failed sign-ins", acct.consecutive));
                                tx.audit(l);
                            }
                        } else {
                            e.details = details;
                            tx.audit(e);
                        }
                        Ok::<_, ServiceError>(())
                    })
                })
                .await?;
            return Err(ServiceError::LoginFailed);
        }
        // Password accepted: start a session at the right stage.
        let uid = user.id;
        let params = rt.hasher.params();
        let rehash = phc.as_deref().is_some_and(|p| params.needs_rehash(p));
        let new_phc = if rehash { rt.hasher.hash(password.to_owned()).await.ok() } else { None };
        let global = rt.settings.session_policy;
        let mfa_required = rt.settings.mfa_required;
        let (token, token_hash) = new_token()?;
        let meta2 = meta.clone();
        let ua = user_agent.map(|s| truncate(&s, 256));
        let committed = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let roles = current_roles(tx, uid).await?;
                    let policy = effective_policy(&global, &roles);
                    let factors: Vec<Factor> =
                        tx.list_factors(uid).await?.into_iter().filter(|f| f.confirmed).collect();
                    let recovery = tx.unused_recovery_codes(uid).await?;
                    let must_change = tx.get_password(uid).await?.is_some_and(|(i, _)| i.must_change);
                    let stage = if !factors.is_empty() {
                        SessionStage::SecondFactor
                    } else if mfa_required {
                        SessionStage::Enrol
                    } else {
                        SessionStage::Active
                    };
                    let session = Session {
                        id: SessionId::generate(),
                        user_id: uid,
                        stage,
                        created_at: now,
                        last_seen_at: now,
                        expires_at: now + policy.absolute_lifetime,
                        password_at: Some(now),
                        mfa_at: None,
                        phishing_resistant_at: None,
                        methods: vec!["password".into()],
                        source_ip: meta2.source_ip.clone(),
                        user_agent: ua,
                        ended_at: None,
                        ended_reason: None,
                        ended_by: None,
                    };
                    tx.insert_session(&session, &token_hash, None).await?;
                    // A correct password clears failed passwords only: failed second factors
                    // stand until a second factor is proved, or each round of right password
                    // and wrong code would start the count again.
                    let mut acct = failures_from_domain(&tx.get_login_failures(uid).await?);
                    if stage == SessionStage::Active {
                        acct.record_success();
                    } else {
                        acct.record_password_success();
                    }
                    tx.set_login_failures(uid, &failures_to_domain(&acct)).await?;
                    if let Some(p) = &new_phc {
                        tx.rehash_password(uid, p).await?;
                    }
                    let action =
                        if stage == SessionStage::Active { Action::AuthLogin } else { Action::AuthPasswordVerified };
                    let mut e = user_event(uid, action, &meta2, Outcome::Success);
                    e.details = json!({ "session": session.id.target(), "methods": session.methods, "next": stage });
                    tx.audit(e);
                    let mut kinds: Vec<String> = factors.iter().map(|f| f.kind.as_str().to_owned()).collect();
                    kinds.sort();
                    kinds.dedup();
                    if recovery > 0 && !factors.is_empty() {
                        kinds.push("recovery_code".into());
                    }
                    Ok::<_, ServiceError>((session, kinds, must_change))
                })
            })
            .await?;
        let (session, factors, must_change) = committed.value;
        let next = match session.stage {
            SessionStage::SecondFactor => NextStep::SecondFactor,
            SessionStage::Enrol => NextStep::Enrol,
            SessionStage::Active => NextStep::Done,
        };
        Ok(SignIn { token: token.encode(), session, next, factors, password_change_required: must_change })
    }
}
