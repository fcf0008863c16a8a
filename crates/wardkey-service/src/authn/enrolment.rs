//! Enrolling second factors (TOTP, passkeys), recovery codes, removing one's own factors.

use super::*;
use crate::stepup::SensitiveChange;
use wardkey_audit::Action;

impl Services {
    // ----------------------------------------------------------------- enrolment

    /// Enrolment is open to a session at the `enrol` stage (first factor) or to an active
    /// session with a fresh second factor (step-up).
    pub(super) fn check_may_enrol(&self, sc: &SessionCaller) -> Result<()> {
        match sc.session.stage {
            SessionStage::Enrol => Ok(()),
            SessionStage::Active => {
                crate::stepup::require_step_up(&sc.caller, self.clock().now(), SensitiveChange::OwnFactors)
            }
            SessionStage::SecondFactor => {
                Err(ServiceError::WrongStage { message: "sign-in is not complete: prove a second factor first".into() })
            }
        }
    }

    pub(super) fn open_totp(&self, user: UserId, sealed: &str) -> Result<wardkey_authn::totp::TotpSecret> {
        let bytes =
            self.authn().secrets.open(sealed, &format!("totp:{}", user.target())).map_err(|e| {
                ServiceError::Internal(format!("TOTP secret cannot be opened (wrong secrets key?): {e}"))
            })?;
        wardkey_authn::totp::TotpSecret::from_bytes(bytes.to_vec()).map_err(|e| ServiceError::Internal(e.to_string()))
    }

    /// Starts a TOTP enrolment: a new secret (stored sealed, unconfirmed) and its QR code.
    pub async fn totp_enrol_begin(&self, sc: &SessionCaller, name: Option<String>) -> Result<TotpEnrolment> {
        self.check_may_enrol(sc)?;
        let name = name.unwrap_or_else(|| TOTP_NAME_DEFAULT.into());
        let mut errors = Vec::new();
        wardkey_domain::validate::text(&mut errors, "name", &name, wardkey_domain::validate::MAX_SHORT);
        wardkey_domain::validate::finish(errors)?;
        let uid = sc.session.user_id;
        let user = self.store.read().await?.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let secret = wardkey_authn::totp::TotpSecret::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let sealed = self
            .authn()
            .secrets
            .seal(secret.as_bytes(), &format!("totp:{}", uid.target()))
            .map_err(|e| ServiceError::Internal(format!("sealing the TOTP secret: {e}")))?;
        let uri = wardkey_authn::totp::otpauth_uri(&self.authn().settings.organisation, &user.username, &secret);
        let qr_svg = wardkey_authn::qr::svg(&uri).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let factor = Factor {
            id: FactorId::generate(),
            user_id: uid,
            kind: FactorKind::Totp,
            name,
            confirmed: false,
            created_at: wardkey_audit::truncate_to_micros(self.clock().now()),
            last_used_at: None,
        };
        let meta = sc.caller.meta.clone();
        let f2 = factor.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    // One pending enrolment at a time: drop older unconfirmed ones.
                    for old in tx.list_factors(uid).await? {
                        if !old.confirmed {
                            tx.delete_factor(old.id).await?;
                        }
                    }
                    tx.insert_factor(&f2, &sealed, None).await?;
                    let mut e = user_event(uid, Action::FactorEnrolStarted, &meta, Outcome::Success);
                    e.details = json!({ "factor": f2.id.target(), "kind": "totp" });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(TotpEnrolment { factor_id: factor.id, secret: secret.to_base32(), otpauth_uri: uri, qr_svg })
    }

    /// Confirms a TOTP enrolment with its first code. At the `enrol` stage this completes
    /// sign-in (the session id rotates). The first factor comes with recovery codes.
    pub async fn totp_enrol_confirm(
        &self,
        sc: &SessionCaller,
        factor_id: FactorId,
        code: &str,
    ) -> Result<FactorConfirmed> {
        self.check_may_enrol(sc)?;
        let uid = sc.session.user_id;
        let f = self.store.read().await?.get_factor(factor_id).await?;
        let Some(f) = f.filter(|f| f.factor.user_id == uid && f.factor.kind == FactorKind::Totp && !f.factor.confirmed)
        else {
            return Err(ServiceError::NotFound { kind: "factor", id: factor_id.to_string() });
        };
        let secret = self.open_totp(uid, &f.secret)?;
        let step = match wardkey_authn::totp::verify(&secret, code, self.clock().now(), None) {
            Ok(s) => i64::try_from(s).map_err(|_| ServiceError::Internal("TOTP step out of range".into()))?,
            Err(_) => {
                let mut e = user_event(uid, Action::FactorEnrolFailed, &sc.caller.meta, Outcome::Failure);
                e.reason = Some("wrong TOTP code at enrolment".into());
                self.store.append_audit(vec![e]).await?;
                return Err(ServiceError::invalid(
                    "code",
                    "the code does not match: check the device's clock and try the current code",
                ));
            }
        };
        self.finish_enrolment(
            sc,
            f.factor,
            move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    Ok(tx.confirm_factor(factor_id, Some(step), now).await?)
                })
            },
            "totp",
            false,
        )
        .await
    }

    /// Starts passkey registration: the options for `navigator.credentials.create()`.
    pub async fn passkey_register_begin(&self, sc: &SessionCaller, name: Option<String>) -> Result<serde_json::Value> {
        self.check_may_enrol(sc)?;
        let name = name.unwrap_or_else(|| "Passkey".into());
        let mut errors = Vec::new();
        wardkey_domain::validate::text(&mut errors, "name", &name, wardkey_domain::validate::MAX_SHORT);
        wardkey_domain::validate::finish(errors)?;
        let uid = sc.session.user_id;
        let mut r = self.store.read().await?;
        let user = r.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let existing: Vec<String> =
            r.factor_secrets(uid, FactorKind::Webauthn).await?.into_iter().filter_map(|f| f.credential_id).collect();
        drop(r);
        let display = user.display_name.clone().unwrap_or_else(|| user.username.clone());
        let (options, state) = self
            .authn()
            .passkeys
            .start_registration(uid.0, &user.username, &display, &existing)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let pending = Pending::WebauthnRegister { state, name, at: self.clock().now().timestamp() };
        self.set_pending(sc, &pending, Action::WebauthnRegistrationStarted).await?;
        Ok(options)
    }

    /// Finishes passkey registration with the authenticator's response.
    pub async fn passkey_register_finish(&self, sc: &SessionCaller, response_json: &str) -> Result<FactorConfirmed> {
        self.check_may_enrol(sc)?;
        let uid = sc.session.user_id;
        let Some(Pending::WebauthnRegister { state, name, .. }) = self.take_pending(sc) else {
            let mut e = user_event(uid, Action::FactorEnrolFailed, &sc.caller.meta, Outcome::Failure);
            e.reason = Some("no passkey registration pending (or it expired)".into());
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::Conflict {
                kind: "factor",
                message: "no passkey registration is pending; start again".into(),
            });
        };
        let registered = match self.authn().passkeys.finish_registration(response_json, &state) {
            Ok(r) => r,
            Err(err) => {
                let mut e = user_event(uid, Action::FactorEnrolFailed, &sc.caller.meta, Outcome::Failure);
                e.reason = Some(format!("passkey registration refused: {}", err.code()));
                let sid = sc.session.id;
                self.store
                    .write(move |tx| {
                        Box::pin(async move {
                            tx.set_session_pending(sid, None).await?;
                            tx.audit(e);
                            Ok::<_, ServiceError>(())
                        })
                    })
                    .await?;
                return Err(ServiceError::invalid(
                    "credential",
                    format!("the passkey response was not accepted ({})", err.code()),
                ));
            }
        };
        let factor = Factor {
            id: FactorId::generate(),
            user_id: uid,
            kind: FactorKind::Webauthn,
            name,
            confirmed: true,
            created_at: wardkey_audit::truncate_to_micros(self.clock().now()),
            last_used_at: None,
        };
        let f2 = factor.clone();
        let sid = sc.session.id;
        self.finish_enrolment(
            sc,
            factor,
            move |tx| {
                Box::pin(async move {
                    tx.insert_factor(&f2, &registered.passkey_json, Some(&registered.credential_id)).await?;
                    tx.set_session_pending(sid, None).await?;
                    Ok(true)
                })
            },
            "webauthn",
            true,
        )
        .await
    }

    /// Shared tail of enrolments: the factor is stored by `store_factor`; the first factor
    /// brings recovery codes; at the `enrol` stage the session becomes active (id rotates).
    pub(super) async fn finish_enrolment(
        &self,
        sc: &SessionCaller,
        factor: Factor,
        store_factor: impl for<'t> FnOnce(&'t mut WriteTx) -> futures::future::BoxFuture<'t, Result<bool>> + Send + 'static,
        method: &'static str,
        phishing_resistant: bool,
    ) -> Result<FactorConfirmed> {
        let codes =
            wardkey_authn::recovery::RecoveryCodes::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let s = sc.session.clone();
        let meta = sc.caller.meta.clone();
        let (token, token_hash) = new_token()?;
        let f2 = factor.clone();
        let hashes = codes.hashes.clone();
        let committed = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let had_factor = tx.list_factors(s.user_id).await?.iter().any(|f| f.confirmed);
                    if !store_factor(tx).await? {
                        return Err(ServiceError::Conflict {
                            kind: "factor",
                            message: "the enrolment was already completed".into(),
                        });
                    }
                    let mut e = user_event(s.user_id, Action::FactorEnrolled, &meta, Outcome::Success);
                    e.details =
                        json!({ "factor": f2.id.target(), "kind": method, "name": f2.name, "session": s.id.target() });
                    tx.audit(e);
                    let issue_codes = !had_factor || tx.unused_recovery_codes(s.user_id).await? == 0;
                    if issue_codes {
                        tx.replace_recovery_codes(s.user_id, &hashes, now).await?;
                        let mut e = user_event(s.user_id, Action::FactorRecoveryCodesIssued, &meta, Outcome::Success);
                        e.details = json!({ "count": hashes.len() });
                        tx.audit(e);
                    }
                    let mut signed_in = None;
                    if s.stage == SessionStage::Enrol {
                        let mut methods = s.methods.clone();
                        methods.push(method.to_owned());
                        let advance = SessionAdvance {
                            new_token_hash: token_hash,
                            stage: SessionStage::Active,
                            mfa_at: Some(now),
                            phishing_resistant_at: phishing_resistant.then_some(now),
                            password_at: s.password_at,
                            methods: methods.clone(),
                            last_seen_at: now,
                        };
                        if !tx.advance_session(s.id, &advance).await? {
                            return Err(ServiceError::SessionExpired);
                        }
                        let mut e = user_event(s.user_id, Action::AuthLogin, &meta, Outcome::Success);
                        e.details =
                            json!({ "session": s.id.target(), "method": method, "methods": methods, "enrolled": true });
                        tx.audit(e);
                        let session = tx.get_session(s.id).await?.ok_or(ServiceError::SessionExpired)?;
                        let must_change = tx.get_password(s.user_id).await?.is_some_and(|(i, _)| i.must_change);
                        signed_in = Some((session, must_change));
                    }
                    let factor = tx.get_factor(f2.id).await?.map(|f| f.factor).unwrap_or(f2);
                    Ok::<_, ServiceError>((factor, issue_codes, signed_in))
                })
            })
            .await?;
        let (factor, issued, signed_in) = committed.value;
        Ok(FactorConfirmed {
            factor,
            recovery_codes: issued.then_some(codes.codes),
            sign_in: signed_in.map(|(session, must_change)| SignIn {
                token: token.encode(),
                session,
                next: NextStep::Done,
                factors: Vec::new(),
                password_change_required: must_change,
            }),
        })
    }

    /// New recovery codes (the old ones stop working). Needs step-up.
    pub async fn regenerate_recovery_codes(&self, sc: &SessionCaller) -> Result<Vec<String>> {
        self.require_step_up(sc)?;
        let codes =
            wardkey_authn::recovery::RecoveryCodes::generate().map_err(|e| ServiceError::Internal(e.to_string()))?;
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        let hashes = codes.hashes.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    if !tx.list_factors(uid).await?.iter().any(|f| f.confirmed) {
                        return Err(ServiceError::Conflict {
                            kind: "factor",
                            message: "enrol a second factor first".into(),
                        });
                    }
                    let now = tx.now();
                    tx.replace_recovery_codes(uid, &hashes, now).await?;
                    let mut e = user_event(uid, Action::FactorRecoveryCodesIssued, &meta, Outcome::Success);
                    e.details = json!({ "count": hashes.len(), "replaced": true });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(codes.codes)
    }

    /// A person's own factors and recovery codes are a sensitive change: the one step-up rule.
    pub(super) fn require_step_up(&self, sc: &SessionCaller) -> Result<()> {
        crate::stepup::require_step_up(&sc.caller, self.clock().now(), SensitiveChange::OwnFactors)
    }

    /// Removes one of the caller's own factors (step-up). The last factor cannot go while
    /// MFA is required: reset by an admin instead.
    pub async fn remove_own_factor(&self, sc: &SessionCaller, id: FactorId) -> Result<()> {
        self.require_step_up(sc)?;
        let uid = sc.session.user_id;
        let meta = sc.caller.meta.clone();
        let mfa_required = self.authn().settings.mfa_required;
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let factors = tx.list_factors(uid).await?;
                    let Some(f) = factors.iter().find(|f| f.id == id) else {
                        return Err(ServiceError::NotFound { kind: "factor", id: id.to_string() });
                    };
                    let confirmed = factors.iter().filter(|f| f.confirmed).count();
                    if mfa_required && f.confirmed && confirmed == 1 {
                        return Err(ServiceError::Conflict {
                            kind: "factor",
                            message: "this is your only second factor: enrol another one first".into(),
                        });
                    }
                    tx.delete_factor(id).await?;
                    let mut e = user_event(uid, Action::FactorRemoved, &meta, Outcome::Success);
                    e.details = json!({ "factor": id.target(), "kind": f.kind, "name": f.name });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await?;
        Ok(())
    }
}
