//! Sessions: loading and checking them by cookie, timeouts and sweeping, listing, ending and
//! revoking them, account unlock and factor reset by an administrator, and a person's own view.

use super::*;
use crate::event;
use wardkey_audit::Action;

impl Services {
    /// Looks up a session by cookie secret. Expired sessions are ended here (with
    /// `session.timeout` or `session.expired`); forged or unknown secrets are `auth.failed`.
    pub(super) async fn load_session(
        &self,
        cookie: &str,
        meta: &RequestMeta,
    ) -> Result<(SessionWithPending, SessionPolicy, Vec<Role>)> {
        let token = match SessionToken::parse(cookie) {
            Ok(t) => t,
            Err(_) => return Err(self.session_auth_failed(meta, "malformed session cookie").await),
        };
        let mut r = self.store.read().await?;
        let Some(found) = r.get_session_by_token(&token.hash()).await? else {
            drop(r);
            return Err(self.session_auth_failed(meta, "unknown session").await);
        };
        if found.session.ended_at.is_some() {
            drop(r);
            return Err(self.session_auth_failed(meta, "session already ended").await);
        }
        let roles = current_roles(&mut r, found.session.user_id).await?;
        drop(r);
        let policy = effective_policy(&self.authn().settings.session_policy, &roles);
        Ok((found, policy, roles))
    }

    pub(super) async fn session_auth_failed(&self, meta: &RequestMeta, reason: &str) -> ServiceError {
        let mut e = anon_event(Action::AuthFailed, meta, Outcome::Failure);
        e.reason = Some(reason.to_owned());
        e.details = json!({ "credential": "session" });
        match self.store.append_audit(vec![e]).await {
            Ok(_) => ServiceError::Unauthenticated,
            Err(e) => e.into(),
        }
    }

    /// Ends `session` because it ran out; the event names which deadline.
    pub(super) async fn expire(&self, session: &Session, idle: bool, meta: &RequestMeta) -> Result<()> {
        let id = session.id;
        let uid = session.user_id;
        let meta = meta.clone();
        let since = if idle { session.last_seen_at } else { session.created_at };
        let r = self
            .store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let (action, reason) =
                        if idle { (Action::SessionTimeout, "timeout") } else { (Action::SessionExpired, "expired") };
                    if tx.end_session(id, now, reason, "system:session").await? {
                        let mut e = user_event(uid, action, &meta, Outcome::Success);
                        e.actor = "system:session".into();
                        e.target = Some(id.target());
                        e.details = json!({ "user": uid.target(), "since": since });
                        tx.audit(e);
                    } else {
                        // Ended meanwhile (by another node or request): nothing to record.
                        return Err(ServiceError::SessionExpired);
                    }
                    Ok::<_, ServiceError>(())
                })
            })
            .await;
        match r {
            Ok(_) | Err(ServiceError::SessionExpired) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Ends sessions nobody used within the global idle timeout or past their absolute
    /// lifetime (`session.timeout` / `session.expired`), so session lists stay true even for
    /// sessions never presented again. Roles only tighten timeouts, so a session past a
    /// role's tighter idle timeout is ended when next presented. Returns how many ended.
    pub async fn sweep_sessions(&self) -> Result<usize> {
        let global = self.authn().settings.session_policy;
        let now = self.clock().now();
        let stale = self.store.read().await?.stale_sessions(now - global.idle_timeout, now, 500).await?;
        let meta = RequestMeta::default();
        let mut n = 0;
        for s in stale {
            let idle = s.expires_at > now;
            self.expire(&s, idle, &meta).await?;
            n += 1;
        }
        Ok(n)
    }

    /// Authenticates a request by session cookie. The session must be in one of `stages`
    /// (`Active` for everything but the sign-in steps). Records activity (heartbeat).
    pub async fn authenticate_session(
        &self,
        cookie: &str,
        meta: RequestMeta,
        stages: &[SessionStage],
    ) -> Result<SessionCaller> {
        let (found, policy, roles) = self.load_session(cookie, &meta).await?;
        let now = self.clock().now();
        let session = found.session;
        match session_state(&session).check(&policy, now) {
            wardkey_authn::session::SessionCheck::Active if now < session.expires_at => {}
            wardkey_authn::session::SessionCheck::IdleExpired { .. } => {
                self.expire(&session, true, &meta).await?;
                return Err(ServiceError::SessionExpired);
            }
            _ => {
                self.expire(&session, false, &meta).await?;
                return Err(ServiceError::SessionExpired);
            }
        }
        if !stages.contains(&session.stage) {
            return Err(ServiceError::WrongStage {
                message: match session.stage {
                    SessionStage::SecondFactor => "sign-in is not complete: prove a second factor first".into(),
                    SessionStage::Enrol => "sign-in is not complete: enrol a second factor first".into(),
                    SessionStage::Active => "this session is already signed in".into(),
                },
            });
        }
        // The user may have been suspended since; their sessions end with that change, but
        // check anyway (defence in depth against a row written by an older node).
        let user = self.store.read().await?.get_user(session.user_id).await?;
        if user.as_ref().is_none_or(|u| u.status != UserStatus::Active) {
            return Err(self.session_auth_failed(&meta, "session of an inactive user").await);
        }
        if now - session.last_seen_at >= heartbeat_resolution(&policy) {
            self.store.touch_sessions(vec![(session.id, now)]).await?;
        }
        let must_change = if session.stage == SessionStage::Active {
            self.store.read().await?.get_password(session.user_id).await?.is_some_and(|(i, _)| i.must_change)
        } else {
            false
        };
        let pr = session.phishing_resistant_at.is_some();
        let caller = Caller {
            actor: Actor::User { user_id: session.user_id },
            scopes: if session.stage == SessionStage::Active { session_scopes(&roles, pr) } else { Vec::new() },
            meta,
            session: Some(SessionContext {
                id: session.id,
                user_id: session.user_id,
                stage: session.stage,
                mfa_at: session.mfa_at,
                phishing_resistant_at: session.phishing_resistant_at,
                must_change_password: must_change,
                step_up_window: policy.step_up_window,
            }),
        };
        Ok(SessionCaller { caller, session, pending: found.pending })
    }

    // ----------------------------------------------------------------- sessions

    /// Ends the caller's own session (logout).
    pub async fn logout(&self, sc: &SessionCaller) -> Result<()> {
        self.end_one_session(&sc.caller, sc.session.id, "logout", Some(sc.session.user_id)).await.map(|_| ())
    }

    pub(super) async fn end_one_session(
        &self,
        caller: &Caller,
        id: SessionId,
        reason: &'static str,
        owner: Option<UserId>,
    ) -> Result<Committed<()>> {
        let caller = caller.clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let s = tx.get_session(id).await?;
                    let Some(s) = s.filter(|s| owner.is_none_or(|o| s.user_id == o)) else {
                        return Err(ServiceError::NotFound { kind: "session", id: id.to_string() });
                    };
                    let now = tx.now();
                    if !tx.end_session(id, now, reason, &caller.actor.principal()).await? {
                        return Err(ServiceError::Conflict {
                            kind: "session",
                            message: "the session has already ended".into(),
                        });
                    }
                    let action = if reason == "logout" { Action::SessionLogout } else { Action::SessionRevoke };
                    let mut e = event(&caller, action, id);
                    e.details = json!({ "user": s.user_id.target() });
                    tx.audit(e);
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    /// The caller's own live sessions.
    pub async fn list_own_sessions(&self, sc: &SessionCaller, page: PageRequest) -> Result<Paged<Session>> {
        let p = page.to_store();
        let items = self
            .store
            .read()
            .await?
            .list_sessions(&SessionQuery { user: Some(sc.session.user_id), include_ended: false }, &p)
            .await?;
        Ok(Paged::new(items, p.limit, |s| s.id.to_string()))
    }

    /// Ends one of the caller's own sessions.
    pub async fn end_own_session(&self, sc: &SessionCaller, id: SessionId) -> Result<()> {
        self.end_one_session(&sc.caller, id, "ended_by_user", Some(sc.session.user_id)).await.map(|_| ())
    }

    /// Any user's sessions (admin).
    pub async fn list_sessions(
        &self,
        by: &Authorized<Admin>,
        query: SessionQuery,
        page: PageRequest,
    ) -> Result<Paged<Session>> {
        let target = query.user.map(|u| u.target());
        let result: Result<Paged<Session>> = async {
            let p = page.to_store();
            let items = self.store.read().await?.list_sessions(&query, &p).await?;
            Ok(Paged::new(items, p.limit, |s| s.id.to_string()))
        }
        .await;
        self.recorded(by.caller(), "list_sessions", target, result).await
    }

    /// Ends any session (admin).
    pub async fn revoke_session(&self, by: &Authorized<Admin>, id: SessionId) -> Result<Committed<()>> {
        self.end_one_session(by.caller(), id, "revoked", None).await
    }

    /// Ends every session of a user (admin).
    pub async fn revoke_user_sessions(&self, by: &Authorized<Admin>, user: UserId) -> Result<Committed<usize>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user_including_deleted(user)
                        .await?
                        .ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let n = end_sessions(tx, user, "revoked", &caller.actor.principal(), &caller.meta).await?;
                    let mut e = event(&caller, Action::SessionRevokeAll, user);
                    e.details = json!({ "ended": n });
                    tx.audit(e);
                    Ok::<_, ServiceError>(n)
                })
            })
            .await
    }

    /// Lifts a lockout (admin).
    pub async fn unlock_account(&self, by: &Authorized<Admin>, user: UserId) -> Result<Committed<bool>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let before = tx.get_login_failures(user).await?;
                    let mut acct = failures_from_domain(&before);
                    acct.admin_unlock();
                    tx.set_login_failures(user, &failures_to_domain(&acct)).await?;
                    let mut e = event(&caller, Action::AuthUnlock, user);
                    e.details =
                        json!({ "was_locked": before.locked_at.is_some(), "consecutive_failures": before.consecutive });
                    tx.audit(e);
                    Ok::<_, ServiceError>(before.locked_at.is_some())
                })
            })
            .await
    }

    /// Removes every factor and recovery code of a user (lost device); every session ends and
    /// the next sign-in goes to enrolment (admin).
    pub async fn reset_factors(
        &self,
        by: &Authorized<Admin>,
        user: UserId,
        reason: Option<String>,
    ) -> Result<Committed<usize>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let removed = tx.delete_all_factors(user).await?;
                    let mut e = event(&caller, Action::FactorReset, user);
                    e.reason = reason.map(|r| truncate(&r, 1024));
                    e.details = json!({
                        "removed": removed.iter().map(|f| json!({ "factor": f.id.target(), "kind": f.kind })).collect::<Vec<_>>(),
                    });
                    tx.audit(e);
                    end_sessions(tx, user, "factors_reset", &caller.actor.principal(), &caller.meta).await?;
                    Ok::<_, ServiceError>(removed.len())
                })
            })
            .await
    }

    /// Sign-in state of a user for admins: factors, lockout, password metadata.
    pub async fn authn_status(&self, by: &Authorized<Admin>, user: UserId) -> Result<serde_json::Value> {
        let target = Some(user.target());
        let result: Result<serde_json::Value> = async {
        let mut r = self.store.read().await?;
        r.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
        let factors = r.list_factors(user).await?;
        let failures = r.get_login_failures(user).await?;
        let password = r.get_password(user).await?.map(|(i, _)| i);
        let codes = r.unused_recovery_codes(user).await?;
        let locked = failures_from_domain(&failures).is_locked(&self.authn().settings.lockout, self.clock().now());
        Ok(
            json!({ "factors": factors, "failures": failures, "locked": locked, "password": password, "recovery_codes_left": codes }),
        )
        }
        .await;
        self.recorded(by.caller(), "authn_status", target, result).await
    }

    /// The caller's own account and session.
    pub async fn me(&self, sc: &SessionCaller) -> Result<Me> {
        let uid = sc.session.user_id;
        let mut r = self.store.read().await?;
        let user = r.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let factors = r.list_factors(uid).await?;
        let recovery_codes_left = r.unused_recovery_codes(uid).await?;
        let password = r.get_password(uid).await?.map(|(i, _)| i);
        let roles = current_roles(&mut r, uid).await?;
        drop(r);
        let pr = sc.session.phishing_resistant_at.is_some();
        let policy = effective_policy(&self.authn().settings.session_policy, &roles);
        Ok(Me {
            user,
            session: sc.session.clone(),
            factors,
            recovery_codes_left,
            password,
            roles: roles
                .iter()
                .map(|r| {
                    let blocked = r.session_policy.require_phishing_resistant && !pr;
                    RoleInSession {
                        role_id: r.id,
                        name: r.name.clone(),
                        exercisable: !blocked,
                        reason: blocked.then(|| "needs a session signed in with a passkey".into()),
                    }
                })
                .collect(),
            scopes: sc.caller.scopes.clone(),
            idle_timeout_secs: policy.idle_timeout.num_seconds(),
            step_up_fresh: sc.caller.session.as_ref().is_some_and(|s| s.fresh_mfa(self.clock().now())),
        })
    }
}

/// Ends every live session of `user` inside the current write job, one `session.revoke`
/// event each, so the change that caused it returns only once they are gone.
pub(crate) async fn end_sessions(
    tx: &mut WriteTx,
    user: UserId,
    reason: &str,
    by: &str,
    meta: &RequestMeta,
) -> Result<usize> {
    let now = tx.now();
    let ended = tx.end_user_sessions(user, now, reason, by).await?;
    for id in &ended {
        let mut e = AuditDraft::new(by.to_owned(), Action::SessionRevoke, Outcome::Success);
        e.target = Some(id.target());
        e.reason = Some(reason.to_owned());
        e.source_ip = meta.source_ip.clone();
        e.request_id = meta.request_id.clone();
        e.details = json!({ "user": user.target() });
        tx.audit(e);
    }
    Ok(ended.len())
}
