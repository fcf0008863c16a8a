//! Passwords: setting by an administrator, marking compromised, changing one's own.

use super::*;
use crate::event;
use wardkey_audit::Action;

impl Services {
    // ----------------------------------------------------------------- passwords

    pub(super) fn check_new_password(&self, user: &User, password: &[u8]) -> Result<String> {
        let rt = self.authn();
        let ctx = PasswordContext {
            username: &user.username,
            display_name: user.display_name.as_deref(),
            organisation: Some(&rt.settings.organisation),
            email: user.email.as_deref(),
            extra: &["wardkey"],
        };
        rt.settings
            .password_policy
            .check_bytes(password, &ctx, rt.settings.mfa_required)
            .map_err(|r| ServiceError::PasswordRejected { code: r.code(), message: r.to_string() })?;
        // check_bytes proved it is UTF-8.
        Ok(String::from_utf8_lossy(password).into_owned())
    }

    /// An admin sets a person's password (onboarding, or after a reset). `must_change` makes
    /// the next sign-in change it. Every session of the user ends.
    pub async fn admin_set_password(
        &self,
        by: &Authorized<Admin>,
        user: UserId,
        password: &[u8],
        must_change: bool,
    ) -> Result<Committed<()>> {
        let u = self
            .store
            .read()
            .await?
            .get_user(user)
            .await?
            .ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
        let password = self.check_new_password(&u, password)?;
        let phc = self.authn().hasher.hash(password).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    let info = PasswordInfo { set_at: now, must_change, set_by: caller.actor.principal() };
                    tx.set_password(user, &phc, &info).await?;
                    let mut e = event(&caller, Action::PasswordSet, user);
                    e.details = json!({ "must_change": must_change });
                    tx.audit(e);
                    end_sessions(tx, user, "password_changed", &caller.actor.principal(), &caller.meta).await?;
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    /// An admin marks a password compromised: it must be changed at the next sign-in, and
    /// every session ends now.
    pub async fn mark_password_compromised(
        &self,
        by: &Authorized<Admin>,
        user: UserId,
        reason: Option<String>,
    ) -> Result<Committed<()>> {
        let caller = by.caller().clone();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    tx.get_user(user).await?.ok_or(ServiceError::NotFound { kind: "user", id: user.to_string() })?;
                    if !tx.set_password_must_change(user, true).await? {
                        return Err(ServiceError::Conflict {
                            kind: "password",
                            message: "the user has no password".into(),
                        });
                    }
                    let mut e = event(&caller, Action::PasswordCompromised, user);
                    e.reason = reason.map(|r| truncate(&r, 1024));
                    tx.audit(e);
                    end_sessions(tx, user, "password_compromised", &caller.actor.principal(), &caller.meta).await?;
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }

    /// A person changes their own password, proving the current one. Every session of the
    /// user ends (this one too: sign in again with the new password).
    pub async fn change_own_password(&self, sc: &SessionCaller, current: &[u8], new: &[u8]) -> Result<Committed<()>> {
        let uid = sc.session.user_id;
        let u = self.store.read().await?.get_user(uid).await?.ok_or(ServiceError::SessionExpired)?;
        let phc = self.store.read().await?.get_password(uid).await?.map(|(_, p)| p);
        let current_ok = match std::str::from_utf8(current) {
            Ok(c) if current.len() <= wardkey_authn::hash::MAX_PASSWORD_BYTES => {
                self.authn().hasher.verify_or_dummy(c.to_owned(), phc).await
            }
            _ => false,
        };
        if !current_ok {
            let mut e = user_event(uid, Action::PasswordChangeFailed, &sc.caller.meta, Outcome::Failure);
            e.reason = Some("current password wrong".into());
            self.store.append_audit(vec![e]).await?;
            return Err(ServiceError::invalid("current_password", "the current password is not correct"));
        }
        let new = self.check_new_password(&u, new)?;
        if new.as_bytes() == current {
            return Err(ServiceError::invalid("new_password", "the new password must differ from the current one"));
        }
        let phc = self.authn().hasher.hash(new).await.map_err(|e| ServiceError::Internal(e.to_string()))?;
        let meta = sc.caller.meta.clone();
        let principal = sc.caller.actor.principal();
        self.store
            .write(move |tx| {
                Box::pin(async move {
                    let now = tx.now();
                    let info = PasswordInfo { set_at: now, must_change: false, set_by: principal.clone() };
                    tx.set_password(uid, &phc, &info).await?;
                    tx.audit(user_event(uid, Action::PasswordChanged, &meta, Outcome::Success));
                    end_sessions(tx, uid, "password_changed", &principal, &meta).await?;
                    Ok::<_, ServiceError>(())
                })
            })
            .await
    }
}
