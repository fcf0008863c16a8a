//! Second factors at sign-in and step-up: TOTP, recovery codes and passkeys, with failures
//! counted toward lockout and bounded per session.

use super::*;
use wardkey_audit::Action;

impl Services {
    /// Counts a failed second factor against the account (counted apart from passwords, same
    /// lock threshold) and against the session; a lock ends the user's sessions, and the
    /// session's [`MAX_SECOND_FACTOR_ATTEMPTS_PER_SESSION`]th failure ends that session.
    pub(super) async fn second_factor_failed(&self, sc: &SessionCaller, method: &str, reason: &str) -> ServiceError {
        let lockout = self.authn().settings.lockout;
        let uid = sc.session.user_id;
        let sid = sc.session.id;
        let meta = sc.caller.meta.clone();
        let method = method.to_owned();
        let reason = reason.to_owned();
        let r = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let mut acct = failures_from_domain(&tx.get_login_failures(uid).await?);
                    let outcome = acct.record_second_factor_failure(&lockout, now);
                    tx.set_login_failures(uid, &failures_to_domain(&acct)).await?;
                    // A ceremony's state is single-use: a failed attempt spends it too.
                    tx.set_session_pending(sid, None).await?;
                    let in_session = tx.count_session_second_factor_failure(sid).await?;
                    let mut e = user_event(uid, Action::AuthMfaFailed, &meta, Outcome::Failure);
                    e.reason = Some(reason);
                    e.details = json!({
                        "session": sid.target(),
                        "method": method,
                        "consecutive_failures": acct.second_factor,
                        "session_failures": in_session,
                    });
                    tx.audit(e);
                    let mut locked = false;
                    let mut ended = false;
                    if outcome.locked_now || acct.is_locked(&lockout, now) {
                        if outcome.locked_now {
                            let mut l = user_event(uid, Action::AuthLockout, &meta, Outcome::Success);
                            l.actor = "system:lockout".into();
                            l.reason = Some(format!("{} consecutive failed sign-in steps", acct.consecutive));
                            tx.audit(l);
                        }
                        end_sessions(tx, uid, "locked", "system:lockout", &meta).await?;
                        locked = true;
                    }
                    if !locked && in_session >= MAX_SECOND_FACTOR_ATTEMPTS_PER_SESSION {
                        // Bounded per session too: guessing must go back through the password
                        // step (and its throttle) every few codes.
                        if tx.end_session(sid, now, "second_factor_attempts", "system:lockout").await? {
                            let mut x =
                                AuditDraft::new("system:lockout".to_owned(), Action::SessionRevoke, Outcome::Success);
                            x.target = Some(sid.target());
                            x.reason = Some(format!("{in_session} failed second factors in this session"));
                            x.source_ip = meta.source_ip.clone();
                            x.request_id = meta.request_id.clone();
                            x.details = json!({ "user": uid.target() });
                            tx.audit(x);
                        }
                        ended = true;
                    }
                    Ok::<_, ServiceError>(ended)
                })
            })
            .await;
        match r {
            // The session is over: the client must sign in again from the password.
            Ok(c) if c.value => ServiceError::SessionExpired,
            Ok(_) => ServiceError::SecondFactorFailed,
            Err(e) => e,
        }
    }

    /// Refuses a second-factor attempt on a locked or throttled account.
    pub(super) async fn check_account_open(&self, sc: &SessionCaller) -> Result<()> {
        let lockout = &self.authn().settings.lockout;
        let now = self.clock().now();
        let acct = failures_from_domain(&self.store.read().await?.get_login_failures(sc.session.user_id).await?);
        if acct.is_locked(lockout, now) || acct.earliest_next_attempt(lockout).is_some_and(|t| now < t) {
            let mut e = user_event(sc.session.user_id, Action::AuthMfaFailed, &sc.caller.meta, Outcome::Denied);
            e.reason =
                Some(if acct.is_locked(lockout, now) { "account locked" } else { "too soon after a failure" }.into());
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::SecondFactorFailed);
        }
        Ok(())
    }

    /// Completes a second-factor step: rotates the session id, records the proof, audits
    /// `auth.login` (sign-in) or `auth.step_up` (an active session proving again).
    pub(super) async fn complete_factor(
        &self,
        sc: &SessionCaller,
        method: &'static str,
        phishing_resistant: bool,
        extra: impl for<'t> FnOnce(&'t mut WriteTx) -> futures::future::BoxFuture<'t, Result<bool>> + Send + 'static,
    ) -> Result<SignIn> {
        let (token, token_hash) = new_token()?;
        let s = sc.session.clone();
        let meta = sc.caller.meta.clone();
        let committed = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if !extra(tx).await? {
                        // Lost a race for a single-use code: roll back, answered below.
                        return Err(ServiceError::SecondFactorFailed);
                    }
                    let now = tx.now();
                    let mut methods = s.methods.clone();
                    methods.push(method.to_owned());
                    methods.truncate(32);
                    let advance = SessionAdvance {
                        new_token_hash: token_hash,
                        stage: SessionStage::Active,
                        mfa_at: Some(now),
                        phishing_resistant_at: if phishing_resistant { Some(now) } else { s.phishing_resistant_at },
                        password_at: s.password_at,
                        methods: methods.clone(),
                        last_seen_at: now,
                    };
                    if !tx.advance_session(s.id, &advance).await? {
                        return Err(ServiceError::SessionExpired);
                    }
                    tx.set_login_failures(s.user_id, &LoginFailures::default()).await?;
                    let action = if s.stage == SessionStage::Active { Action::AuthStepUp } else { Action::AuthLogin };
                    let mut e = user_event(s.user_id, action, &meta, Outcome::Success);
                    e.details = json!({ "session": s.id.target(), "method": method, "methods": methods, "phishing_resistant": phishing_resistant });
                    tx.audit(e);
                    let session = tx.get_session(s.id).await?.ok_or(ServiceError::SessionExpired)?;
                    let must_change = tx.get_password(s.user_id).await?.is_some_and(|(i, _)| i.must_change);
                    Ok::<_, ServiceError>((session, must_change))
                })
            })
            .await;
        match committed {
            Ok(c) => {
                let (session, must_change) = c.value;
                Ok(SignIn {
                    token: token.encode(),
                    session,
                    next: NextStep::Done,
                    factors: Vec::new(),
                    password_change_required: must_change,
                })
            }
            Err(ServiceError::SecondFactorFailed) => {
                Err(self.second_factor_failed(sc, method, "code already used").await)
            }
            Err(e) => Err(e),
        }
    }

    /// Second factor by TOTP code: at sign-in (stage `second_factor`) or as step-up.
    pub async fn verify_totp(&self, sc: &SessionCaller, code: &str) -> Result<SignIn> {
        self.check_account_open(sc).await?;
        if code.len() > 32 {
            return Err(ServiceError::invalid("code", "a TOTP code has 6 digits"));
        }
        let now = self.clock().now();
        let uid = sc.session.user_id;
        let factors = self.store.read().await?.factor_secrets(uid, FactorKind::Totp).await?;
        let mut matched: Option<(FactorId, u64)> = None;
        let mut replayed = false;
        let mut malformed = false;
        for f in factors.iter().filter(|f| f.factor.confirmed) {
            let secret = self.open_totp(uid, &f.secret)?;
            let last = f.last_used_step.and_then(|s| u64::try_from(s).ok());
            match wardkey_authn::totp::verify(&secret, code, now, last) {
                Ok(step) if matched.is_none() => matched = Some((f.factor.id, step)),
                Ok(_) => {}
                Err(wardkey_authn::totp::TotpError::Replayed) => replayed = true,
                Err(wardkey_authn::totp::TotpError::Malformed) => malformed = true,
                Err(_) => {}
            }
        }
        let Some((fid, step)) = matched else {
            let reason = if replayed {
                "TOTP code already used"
            } else if malformed {
                "malformed TOTP code"
            } else {
                "wrong TOTP code"
            };
            return Err(self.second_factor_failed(sc, "totp", reason).await);
        };
        let step = i64::try_from(step).map_err(|_| ServiceError::Internal("TOTP step out of range".into()))?;
        self.complete_factor(sc, "totp", false, move |tx| {
            Box::pin(async move {
                let now = tx.now();
                Ok(tx.use_totp_step(fid, step, now).await?)
            })
        })
        .await
    }

    /// Second factor by recovery code (single use).
    pub async fn verify_recovery_code(&self, sc: &SessionCaller, code: &str) -> Result<SignIn> {
        self.check_account_open(sc).await?;
        if code.len() > 64 {
            return Err(ServiceError::invalid("code", "a recovery code looks like XXXX-XXXX-XXXX-XXXX"));
        }
        let Some(hash) = wardkey_authn::recovery::hash_code(code) else {
            return Err(self.second_factor_failed(sc, "recovery_code", "malformed recovery code").await);
        };
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        self.complete_factor(sc, "recovery_code", false, move |tx| {
            Box::pin(async move {
                let now = tx.now();
                if !tx.use_recovery_code(uid, &hash, now).await? {
                    return Ok(false);
                }
                let left = tx.unused_recovery_codes(uid).await?;
                let mut e = user_event(uid, Action::FactorRecoveryCodeUsed, &meta, Outcome::Success);
                e.details = json!({ "remaining": left });
                tx.audit(e);
                Ok(true)
            })
        })
        .await
    }

    /// Starts a passkey assertion (sign-in or step-up): the options for
    /// `navigator.credentials.get()`.
    pub async fn webauthn_begin(&self, sc: &SessionCaller) -> Result<serde_json::Value> {
        self.check_account_open(sc).await?;
        let uid = sc.session.user_id;
        let stored: Vec<String> = self
            .store
            .read()
            .await?
            .factor_secrets(uid, FactorKind::Webauthn)
            .await?
            .into_iter()
            .map(|f| f.secret)
            .collect();
        if stored.is_empty() {
            return Err(ServiceError::Conflict { kind: "factor", message: "no passkey is enrolled".into() });
        }
        let (options, state) =
            self.authn().passkeys.start_authentication(&stored).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let pending = Pending::WebauthnAuth { state, at: self.clock().now().timestamp() };
        self.set_pending(sc, &pending, Action::WebauthnChallenge).await?;
        Ok(options)
    }

    pub(super) async fn set_pending(&self, sc: &SessionCaller, pending: &Pending, action: Action) -> Result<()> {
        let json = serde_json::to_string(pending).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let sid = sc.session.id;
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if !tx.set_session_pending(sid, Some(&json)).await? {
                        return Err(ServiceError::SessionExpired);
                    }
                    let mut e = user_event(uid, action, &meta, Outcome::Success);
                    e.details = json!({ "session": sid.target() });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(())
    }

    pub(super) fn take_pending(&self, sc: &SessionCaller) -> Option<Pending> {
        let p: Pending = serde_json::from_str(sc.pending.as_deref()?).ok()?;
        let at = match &p {
            Pending::WebauthnAuth { at, .. } | Pending::WebauthnRegister { at, .. } => *at,
        };
        let age = self.clock().now().timestamp() - at;
        (0..=CEREMONY_TTL_SECS).contains(&age).then_some(p)
    }

    /// Finishes a passkey assertion: a phishing-resistant second factor.
    pub async fn webauthn_finish(&self, sc: &SessionCaller, response_json: &str) -> Result<SignIn> {
        self.check_account_open(sc).await?;
        let Some(Pending::WebauthnAuth { state, .. }) = self.take_pending(sc) else {
            return Err(self
                .second_factor_failed(sc, "webauthn", "no passkey challenge pending (or it expired)")
                .await);
        };
        let assertion = match self.authn().passkeys.finish_authentication(response_json, &state) {
            Ok(a) => a,
            Err(e) => {
                return Err(self.second_factor_failed(sc, "webauthn", &format!("passkey refused: {}", e.code())).await);
            }
        };
        let uid = sc.session.user_id;
        let stored = self.store.read().await?.factor_secrets(uid, FactorKind::Webauthn).await?;
        let Some(f) = stored.into_iter().find(|f| f.credential_id.as_deref() == Some(assertion.credential_id.as_str()))
        else {
            return Err(self.second_factor_failed(sc, "webauthn", "passkey not enrolled for this user").await);
        };
        let updated =
            Passkeys::update_stored(&f.secret, &assertion).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let fid = f.factor.id;
        self.complete_factor(sc, "webauthn", true, move |tx| {
            Box::pin(async move {
                let now = tx.now();
                tx.touch_factor(fid, updated.as_deref(), now).await?;
                Ok(true)
            })
        })
        .await
    }
}
