//! Authentication state: password hashes, second factors, recovery codes, sign-in failure
//! counters and sessions. Secrets are stored only in the forms the service hands us (PHC
//! strings, sealed seeds, hashes); this module never sees a clear secret.
//!
//! The single-use rules (a TOTP step, a recovery code) are compare-and-set updates, so they
//! hold even with several nodes writing to one PostgreSQL.

use crate::conn::{Conn, RowExt, micros, opt_micros, to_json};
use crate::error::{Unique, map_write_err};
use crate::{Page, StoreError, WriteTx};
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use wardkey_domain::{
    Factor, FactorId, FactorKind, LoginFailures, PasswordInfo, Session, SessionId, SessionStage, UserId,
};

macro_rules! factor_cols {
    () => {
        "id, user_id, kind, name, confirmed, created_at, last_used_at"
    };
}

macro_rules! session_cols {
    () => {
        "id, user_id, stage, created_at, last_seen_at, expires_at, password_at, mfa_at, phishing_resistant_at, \
         methods, source_ip, user_agent, ended_at, ended_reason, ended_by"
    };
}

fn factor_from_row(r: &AnyRow) -> Result<Factor, StoreError> {
    let kind = r.text("kind")?;
    Ok(Factor {
        id: FactorId(r.uuid("id")?),
        user_id: UserId(r.uuid("user_id")?),
        kind: FactorKind::parse(&kind).ok_or_else(|| StoreError::corrupt(format!("factor kind {kind:?}")))?,
        name: r.text("name")?,
        confirmed: r.flag("confirmed")?,
        created_at: r.ts("created_at")?,
        last_used_at: r.opt_ts("last_used_at")?,
    })
}

fn session_from_row(r: &AnyRow) -> Result<Session, StoreError> {
    let stage = r.text("stage")?;
    Ok(Session {
        id: SessionId(r.uuid("id")?),
        user_id: UserId(r.uuid("user_id")?),
        stage: SessionStage::parse(&stage).ok_or_else(|| StoreError::corrupt(format!("session stage {stage:?}")))?,
        created_at: r.ts("created_at")?,
        last_seen_at: r.ts("last_seen_at")?,
        expires_at: r.ts("expires_at")?,
        password_at: r.opt_ts("password_at")?,
        mfa_at: r.opt_ts("mfa_at")?,
        phishing_resistant_at: r.opt_ts("phishing_resistant_at")?,
        methods: r.json("methods")?,
        source_ip: r.opt_text("source_ip")?,
        user_agent: r.opt_text("user_agent")?,
        ended_at: r.opt_ts("ended_at")?,
        ended_reason: r.opt_text("ended_reason")?,
        ended_by: r.opt_text("ended_by")?,
    })
}

/// A factor with its stored secret (sealed TOTP seed or passkey JSON).
#[derive(Debug, Clone)]
pub struct FactorSecret {
    pub factor: Factor,
    pub secret: String,
    /// A passkey's credential id (base64url); none for TOTP.
    pub credential_id: Option<String>,
    pub last_used_step: Option<i64>,
}

fn factor_secret_from_row(r: &AnyRow) -> Result<FactorSecret, StoreError> {
    Ok(FactorSecret {
        factor: factor_from_row(r)?,
        secret: r.text("secret")?,
        credential_id: r.opt_text("credential_id")?,
        last_used_step: r.opt_int("last_used_step")?,
    })
}

/// A session found by its token hash, with any ceremony state in progress.
#[derive(Debug, Clone)]
pub struct SessionWithPending {
    pub session: Session,
    pub pending: Option<String>,
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub user: Option<UserId>,
    /// Include ended sessions (for investigations); live ones only otherwise.
    pub include_ended: bool,
}

/// The changes a completed sign-in step makes to a session (its id rotates with it).
#[derive(Debug, Clone)]
pub struct SessionAdvance {
    pub new_token_hash: Vec<u8>,
    pub stage: SessionStage,
    pub mfa_at: Option<DateTime<Utc>>,
    pub phishing_resistant_at: Option<DateTime<Utc>>,
    pub password_at: Option<DateTime<Utc>>,
    pub methods: Vec<String>,
    pub last_seen_at: DateTime<Utc>,
}

impl Conn {
    /// Password metadata and PHC string of `user`, if one is set.
    pub async fn get_password(&mut self, user: UserId) -> Result<Option<(PasswordInfo, String)>, StoreError> {
        let row = sqlx::query("SELECT phc, set_at, set_by, must_change FROM password_credentials WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(self.ex())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                PasswordInfo {
                    set_at: r.ts("set_at")?,
                    set_by: r.text("set_by")?,
                    must_change: r.flag("must_change")?,
                },
                r.text("phc")?,
            ))),
        }
    }

    /// Every factor of `user` (pending TOTP enrolments included), oldest first.
    pub async fn list_factors(&mut self, user: UserId) -> Result<Vec<Factor>, StoreError> {
        let rows =
            sqlx::query(concat!("SELECT ", factor_cols!(), " FROM authn_factors WHERE user_id = $1 ORDER BY id"))
                .bind(user.to_string())
                .fetch_all(self.ex())
                .await?;
        rows.iter().map(factor_from_row).collect()
    }

    /// Factors of one kind with their secrets, oldest first.
    pub async fn factor_secrets(&mut self, user: UserId, kind: FactorKind) -> Result<Vec<FactorSecret>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            factor_cols!(),
            ", secret, credential_id, last_used_step FROM authn_factors WHERE user_id = $1 AND kind = $2 ORDER BY id"
        ))
        .bind(user.to_string())
        .bind(kind.as_str())
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(factor_secret_from_row).collect()
    }

    pub async fn get_factor(&mut self, id: FactorId) -> Result<Option<FactorSecret>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            factor_cols!(),
            ", secret, credential_id, last_used_step FROM authn_factors WHERE id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.ex())
        .await?;
        row.as_ref().map(factor_secret_from_row).transpose()
    }

    /// Recovery codes of `user` not used yet.
    pub async fn unused_recovery_codes(&mut self, user: UserId) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL")
            .bind(user.to_string())
            .fetch_one(self.ex())
            .await?;
        row.int("n")
    }

    pub async fn get_login_failures(&mut self, user: UserId) -> Result<LoginFailures, StoreError> {
        let row = sqlx::query(
            "SELECT consecutive, last_failure_at, locked_at, second_factor_consecutive, second_factor_last_failure_at \
             FROM login_failures WHERE user_id = $1",
        )
        .bind(user.to_string())
        .fetch_optional(self.ex())
        .await?;
        match row {
            None => Ok(LoginFailures::default()),
            Some(r) => Ok(LoginFailures {
                consecutive: u32::try_from(r.int("consecutive")?).unwrap_or(u32::MAX),
                last_failure_at: r.opt_ts("last_failure_at")?,
                locked_at: r.opt_ts("locked_at")?,
                second_factor_consecutive: u32::try_from(r.int("second_factor_consecutive")?).unwrap_or(u32::MAX),
                second_factor_last_failure_at: r.opt_ts("second_factor_last_failure_at")?,
            }),
        }
    }

    /// The session whose cookie secret hashes to `token_hash`, ended or not.
    pub async fn get_session_by_token(&mut self, token_hash: &[u8]) -> Result<Option<SessionWithPending>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", session_cols!(), ", pending FROM sessions WHERE token_hash = $1"))
            .bind(token_hash.to_vec())
            .fetch_optional(self.ex())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(SessionWithPending { session: session_from_row(&r)?, pending: r.opt_text("pending")? })),
        }
    }

    pub async fn get_session(&mut self, id: SessionId) -> Result<Option<Session>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// Live sessions idle since before `idle_before` or past their absolute deadline at
    /// `now`, oldest first, at most `limit` (for the sweeper).
    pub async fn stale_sessions(
        &mut self,
        idle_before: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_cols!(),
            " FROM sessions WHERE ended_at IS NULL AND (last_seen_at <= $1 OR expires_at <= $2) ORDER BY id LIMIT $3"
        ))
        .bind(micros(idle_before))
        .bind(micros(now))
        .bind(limit)
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Sessions in id (= creation) order, paged by id.
    pub async fn list_sessions(&mut self, query: &SessionQuery, page: &Page) -> Result<Vec<Session>, StoreError> {
        let mut f = crate::conn::Filter::default();
        if let Some(u) = query.user {
            f.push("user_id = ?", [crate::conn::Arg::Text(u.to_string())]);
        }
        if !query.include_ended {
            f.push("ended_at IS NULL", []);
        }
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", session_cols!(), " FROM sessions {} {}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(session_from_row).collect()
    }
}

impl WriteTx {
    /// Sets (or replaces) the password of `user`.
    pub async fn set_password(&mut self, user: UserId, phc: &str, info: &PasswordInfo) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO password_credentials (user_id, phc, set_at, set_by, must_change) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET phc = excluded.phc, set_at = excluded.set_at, set_by = excluded.set_by, \
             must_change = excluded.must_change",
        )
        .bind(user.to_string())
        .bind(phc.to_owned())
        .bind(micros(info.set_at))
        .bind(info.set_by.clone())
        .bind(i64::from(info.must_change))
        .execute(self.conn.ex())
        .await?;
        Ok(())
    }

    /// Re-hashes with new parameters without touching the metadata (no user-visible change).
    pub async fn rehash_password(&mut self, user: UserId, phc: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE password_credentials SET phc = $1 WHERE user_id = $2")
            .bind(phc.to_owned())
            .bind(user.to_string())
            .execute(self.conn.ex())
            .await?;
        Ok(())
    }

    /// Marks the password as to be changed at next sign-in; false if the user has none.
    pub async fn set_password_must_change(&mut self, user: UserId, must_change: bool) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE password_credentials SET must_change = $1 WHERE user_id = $2")
            .bind(i64::from(must_change))
            .bind(user.to_string())
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn insert_factor(
        &mut self,
        factor: &Factor,
        secret: &str,
        credential_id: Option<&str>,
    ) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO authn_factors (id, user_id, kind, name, secret, credential_id, confirmed, last_used_step, \
             created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9)",
        )
        .bind(factor.id.to_string())
        .bind(factor.user_id.to_string())
        .bind(factor.kind.as_str())
        .bind(factor.name.clone())
        .bind(secret.to_owned())
        .bind(credential_id.map(str::to_owned))
        .bind(i64::from(factor.confirmed))
        .bind(micros(factor.created_at))
        .bind(opt_micros(factor.last_used_at));
        let unique = [Unique {
            index: "authn_factors_credential",
            sqlite_columns: "authn_factors.credential_id",
            kind: "factor",
            field: "credential_id",
            value: credential_id.unwrap_or_default(),
        }];
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &unique, None))?;
        Ok(())
    }

    /// A pending TOTP factor becomes usable once its first code was typed; `step` is that
    /// code's step, so it cannot be used again for sign-in.
    pub async fn confirm_factor(
        &mut self,
        id: FactorId,
        step: Option<i64>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE authn_factors SET confirmed = 1, last_used_step = $1, last_used_at = $2 WHERE id = $3 AND confirmed = 0",
        )
        .bind(step)
        .bind(micros(at))
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Accepts TOTP step `step` for factor `id` only if it is later than every step accepted
    /// before (compare-and-set: one code, one use, across nodes).
    pub async fn use_totp_step(&mut self, id: FactorId, step: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE authn_factors SET last_used_step = $1, last_used_at = $2 \
             WHERE id = $3 AND confirmed = 1 AND (last_used_step IS NULL OR last_used_step < $1)",
        )
        .bind(step)
        .bind(micros(at))
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Records a passkey use; `secret` is the passkey JSON with its updated counter, if changed.
    pub async fn touch_factor(
        &mut self,
        id: FactorId,
        secret: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        match secret {
            Some(s) => {
                sqlx::query("UPDATE authn_factors SET secret = $1, last_used_at = $2 WHERE id = $3")
                    .bind(s.to_owned())
                    .bind(micros(at))
                    .bind(id.to_string())
                    .execute(self.conn.ex())
                    .await?
            }
            None => {
                sqlx::query("UPDATE authn_factors SET last_used_at = $1 WHERE id = $2")
                    .bind(micros(at))
                    .bind(id.to_string())
                    .execute(self.conn.ex())
                    .await?
            }
        };
        Ok(())
    }

    pub async fn delete_factor(&mut self, id: FactorId) -> Result<bool, StoreError> {
        let n = sqlx::query("DELETE FROM authn_factors WHERE id = $1")
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Removes every factor and recovery code of `user`; returns the factors removed.
    pub async fn delete_all_factors(&mut self, user: UserId) -> Result<Vec<Factor>, StoreError> {
        let factors = self.list_factors(user).await?;
        sqlx::query("DELETE FROM authn_factors WHERE user_id = $1")
            .bind(user.to_string())
            .execute(self.conn.ex())
            .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(self.conn.ex())
            .await?;
        Ok(factors)
    }

    /// Replaces the recovery codes of `user` with a new set (hashes only).
    pub async fn replace_recovery_codes(
        &mut self,
        user: UserId,
        hashes: &[String],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(user.to_string())
            .execute(self.conn.ex())
            .await?;
        for h in hashes {
            sqlx::query(
                "INSERT INTO recovery_codes (user_id, code_hash, created_at, used_at) VALUES ($1, $2, $3, NULL)",
            )
            .bind(user.to_string())
            .bind(h.clone())
            .bind(micros(at))
            .execute(self.conn.ex())
            .await?;
        }
        Ok(())
    }

    /// Consumes the recovery code with hash `hash`: true once, false ever after.
    pub async fn use_recovery_code(&mut self, user: UserId, hash: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
        )
        .bind(micros(at))
        .bind(user.to_string())
        .bind(hash.to_owned())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    pub async fn set_login_failures(&mut self, user: UserId, f: &LoginFailures) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_failures (user_id, consecutive, last_failure_at, locked_at, second_factor_consecutive, \
             second_factor_last_failure_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (user_id) DO UPDATE SET consecutive = excluded.consecutive, \
             last_failure_at = excluded.last_failure_at, locked_at = excluded.locked_at, \
             second_factor_consecutive = excluded.second_factor_consecutive, \
             second_factor_last_failure_at = excluded.second_factor_last_failure_at",
        )
        .bind(user.to_string())
        .bind(i64::from(f.consecutive))
        .bind(opt_micros(f.last_failure_at))
        .bind(opt_micros(f.locked_at))
        .bind(i64::from(f.second_factor_consecutive))
        .bind(opt_micros(f.second_factor_last_failure_at))
        .execute(self.conn.ex())
        .await?;
        Ok(())
    }

    pub async fn insert_session(
        &mut self,
        s: &Session,
        token_hash: &[u8],
        pending: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, stage, created_at, last_seen_at, expires_at, password_at, mfa_at, \
             phishing_resistant_at, methods, source_ip, user_agent, pending, ended_at, ended_reason, ended_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL, NULL, NULL)",
        )
        .bind(s.id.to_string())
        .bind(token_hash.to_vec())
        .bind(s.user_id.to_string())
        .bind(s.stage.as_str())
        .bind(micros(s.created_at))
        .bind(micros(s.last_seen_at))
        .bind(micros(s.expires_at))
        .bind(opt_micros(s.password_at))
        .bind(opt_micros(s.mfa_at))
        .bind(opt_micros(s.phishing_resistant_at))
        .bind(to_json(&s.methods)?)
        .bind(s.source_ip.clone())
        .bind(s.user_agent.clone())
        .bind(pending.map(str::to_owned))
        .execute(self.conn.ex())
        .await?;
        Ok(())
    }

    /// Completes a sign-in step on a live session: new token hash (the id rotates), stage
    /// and proofs; clears any ceremony state. False if the session ended meanwhile.
    pub async fn advance_session(&mut self, id: SessionId, a: &SessionAdvance) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE sessions SET token_hash = $1, stage = $2, mfa_at = $3, phishing_resistant_at = $4, password_at = $5, \
             methods = $6, last_seen_at = $7, pending = NULL WHERE id = $8 AND ended_at IS NULL",
        )
        .bind(a.new_token_hash.clone())
        .bind(a.stage.as_str())
        .bind(opt_micros(a.mfa_at))
        .bind(opt_micros(a.phishing_resistant_at))
        .bind(opt_micros(a.password_at))
        .bind(to_json(&a.methods)?)
        .bind(micros(a.last_seen_at))
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Stores (or clears) the state of a ceremony in progress on a live session.
    pub async fn set_session_pending(&mut self, id: SessionId, pending: Option<&str>) -> Result<bool, StoreError> {
        let n = sqlx::query("UPDATE sessions SET pending = $1 WHERE id = $2 AND ended_at IS NULL")
            .bind(pending.map(str::to_owned))
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Records activity on a live session.
    pub async fn touch_session(&mut self, id: SessionId, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND ended_at IS NULL AND last_seen_at < $1",
        )
        .bind(micros(at))
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends a live session; false if it had already ended (or does not exist).
    /// Counts one failed second-factor attempt against the live session `id`; returns the
    /// session's count so far (0 when the session is gone or ended).
    pub async fn count_session_second_factor_failure(&mut self, id: SessionId) -> Result<u32, StoreError> {
        sqlx::query(
            "UPDATE sessions SET second_factor_failures = second_factor_failures + 1 \
             WHERE id = $1 AND ended_at IS NULL",
        )
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?;
        let row = sqlx::query("SELECT second_factor_failures FROM sessions WHERE id = $1 AND ended_at IS NULL")
            .bind(id.to_string())
            .fetch_optional(self.conn.ex())
            .await?;
        match row {
            None => Ok(0),
            Some(r) => Ok(u32::try_from(r.int("second_factor_failures")?).unwrap_or(u32::MAX)),
        }
    }

    pub async fn end_session(
        &mut self,
        id: SessionId,
        at: DateTime<Utc>,
        reason: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        let n = sqlx::query(
            "UPDATE sessions SET ended_at = $1, ended_reason = $2, ended_by = $3, pending = NULL \
             WHERE id = $4 AND ended_at IS NULL",
        )
        .bind(micros(at))
        .bind(reason.to_owned())
        .bind(by.to_owned())
        .bind(id.to_string())
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Ends every live session of `user`, returning the ids ended.
    pub async fn end_user_sessions(
        &mut self,
        user: UserId,
        at: DateTime<Utc>,
        reason: &str,
        by: &str,
    ) -> Result<Vec<SessionId>, StoreError> {
        let rows = sqlx::query(
            "UPDATE sessions SET ended_at = $1, ended_reason = $2, ended_by = $3, pending = NULL \
             WHERE user_id = $4 AND ended_at IS NULL RETURNING id",
        )
        .bind(micros(at))
        .bind(reason.to_owned())
        .bind(by.to_owned())
        .bind(user.to_string())
        .fetch_all(self.conn.ex())
        .await?;
        let mut ids = rows.iter().map(|r| r.uuid("id").map(SessionId)).collect::<Result<Vec<_>, _>>()?;
        ids.sort();
        Ok(ids)
    }
}
