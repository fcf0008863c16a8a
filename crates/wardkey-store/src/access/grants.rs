//! Grants: subject to role, optionally scoped, with provenance; revoked rows are kept.

use super::*;

fn grant_from_row(r: &AnyRow) -> Result<Grant, StoreError> {
    let kind = r.text("subject_kind")?;
    let subject = Subject::from_parts(&kind, r.uuid("subject_id")?)
        .ok_or_else(|| StoreError::corrupt(format!("subject kind {kind:?}")))?;
    let source = r.text("source")?;
    Ok(Grant {
        id: GrantId(r.uuid("id")?),
        subject,
        role_id: RoleId(r.uuid("role_id")?),
        resource_id: r.opt_uuid("resource_id")?.map(ResourceId),
        source: GrantSource::parse(&source).ok_or_else(|| StoreError::corrupt(format!("grant source {source:?}")))?,
        requester: r.opt_text("requester")?,
        approver: r.opt_text("approver")?,
        justification: r.opt_text("justification")?,
        starts_at: r.ts("starts_at")?,
        expires_at: r.opt_ts("expires_at")?,
        created_at: r.ts("created_at")?,
        created_by: r.text("created_by")?,
        revoked_at: r.opt_ts("revoked_at")?,
        revoked_by: r.opt_text("revoked_by")?,
        conditions: r.json("conditions")?,
        version: r.int("version")?,
    })
}

fn subject_table(s: &Subject) -> &'static str {
    match s {
        Subject::User(_) => "users",
        Subject::Group(_) => "groups",
        Subject::ServiceAccount(_) => "service_accounts",
    }
}

/// `... AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)` for grants live at `now`.
fn push_live(f: &mut Filter, prefix: &str, now: DateTime<Utc>) {
    f.push(&format!("{prefix}revoked_at IS NULL"), []);
    f.push(&format!("({prefix}expires_at IS NULL OR {prefix}expires_at > ?)"), [Arg::Int(micros(now))]);
}

impl Conn {
    pub async fn get_grant(&mut self, id: GrantId) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(concat!("SELECT ", grant_cols!(), " FROM grants WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(self.ex())
            .await?;
        row.as_ref().map(grant_from_row).transpose()
    }

    pub async fn list_grants(&mut self, q: &GrantQuery, page: &Page) -> Result<Vec<Grant>, StoreError> {
        let mut f = Filter::default();
        if let Some(s) = q.subject {
            f.push(
                "subject_kind = ? AND subject_id = ?",
                [Arg::Text(s.kind().into()), Arg::Text(s.uuid().to_string())],
            );
        }
        if let Some(r) = q.role_id {
            f.push("role_id = ?", [Arg::Text(r.to_string())]);
        }
        if let Some(r) = q.resource_id {
            f.push("resource_id = ?", [Arg::Text(r.to_string())]);
        }
        if !q.include_inactive {
            push_live(&mut f, "", self.current_time());
        }
        let tail = f.page(page, "id")?;
        let sql = format!(concat!("SELECT ", grant_cols!(), " FROM grants{}{}"), f.where_sql(), tail);
        let rows = f.fetch_all(self.ex(), sql).await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Grants of `subject` neither revoked nor expired at `now` (including ones that start
    /// later), in id order.
    pub async fn live_grants_for_subject(
        &mut self,
        subject: Subject,
        now: DateTime<Utc>,
    ) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_cols!(),
            " FROM grants WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL \
              AND (expires_at IS NULL OR expires_at > $3) ORDER BY id"
        ))
        .bind(subject.kind())
        .bind(subject.uuid().to_string())
        .bind(micros(now))
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(grant_from_row).collect()
    }

    /// Every grant neither revoked nor expired at `now`, in id order (the decision index is
    /// built from this).
    pub async fn all_live_grants(&mut self, now: DateTime<Utc>) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            grant_cols!(),
            " FROM grants WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) ORDER BY id"
        ))
        .bind(micros(now))
        .fetch_all(self.ex())
        .await?;
        rows.iter().map(grant_from_row).collect()
    }
}

impl WriteTx {
    /// Inserts a grant; its subject, role and resource must exist and be live.
    pub async fn insert_grant(&mut self, g: &Grant) -> Result<(), StoreError> {
        let sid = g.subject.uuid().to_string();
        if !self.conn.exists_live(subject_table(&g.subject), true, &sid).await? {
            return Err(StoreError::NotFound { kind: g.subject.kind(), id: sid });
        }
        if !self.conn.exists_live("roles", true, &g.role_id.to_string()).await? {
            return Err(StoreError::NotFound { kind: "role", id: g.role_id.to_string() });
        }
        if let Some(r) = g.resource_id
            && !self.conn.exists_live("resources", true, &r.to_string()).await?
        {
            return Err(StoreError::NotFound { kind: "resource", id: r.to_string() });
        }
        let q = sqlx::query(
            "INSERT INTO grants (id, subject_kind, subject_id, role_id, resource_id, source, requester, approver, \
             justification, starts_at, expires_at, created_at, created_by, revoked_at, revoked_by, version, conditions) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(g.id.to_string())
        .bind(g.subject.kind())
        .bind(sid)
        .bind(g.role_id.to_string())
        .bind(g.resource_id.map(|r| r.to_string()))
        .bind(g.source.as_str())
        .bind(g.requester.clone())
        .bind(g.approver.clone())
        .bind(g.justification.clone())
        .bind(micros(g.starts_at))
        .bind(opt_micros(g.expires_at))
        .bind(micros(g.created_at))
        .bind(g.created_by.clone())
        .bind(opt_micros(g.revoked_at))
        .bind(g.revoked_by.clone())
        .bind(g.version)
        .bind(to_json(&g.conditions)?);
        let unique =
            [Unique { index: "grants_pkey", sqlite_columns: "grants.id", kind: "grant", field: "id", value: "" }];
        self.conn.guarded(q).await.map_err(|e| map_write_err(e, &unique, None))?;
        Ok(())
    }

    /// Revokes a grant (kept, with who and when, for evidence). Already revoked → Conflict.
    pub async fn revoke_grant(
        &mut self,
        id: GrantId,
        expected_version: i64,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Grant, StoreError> {
        let ids = id.to_string();
        let n = sqlx::query(
            "UPDATE grants SET revoked_at = $1, revoked_by = $2, version = version + 1 \
             WHERE id = $3 AND version = $4 AND revoked_at IS NULL",
        )
        .bind(micros(at))
        .bind(by.to_owned())
        .bind(ids.clone())
        .bind(expected_version)
        .execute(self.conn.ex())
        .await?
        .rows_affected();
        let grant = self.conn.get_grant(id).await?;
        let Some(grant) = grant else {
            return Err(StoreError::NotFound { kind: "grant", id: ids });
        };
        if n == 1 {
            return Ok(grant);
        }
        if grant.version != expected_version {
            return Err(StoreError::VersionConflict {
                kind: "grant",
                id: ids,
                expected: expected_version,
                actual: grant.version,
            });
        }
        Err(StoreError::Conflict { kind: "grant", id: ids, message: "the grant is already revoked".into() })
    }

    /// Revokes every grant of `subject` not yet revoked nor expired at `at`; returns their ids.
    pub async fn revoke_all_grants_for_subject(
        &mut self,
        subject: Subject,
        at: DateTime<Utc>,
        by: &str,
    ) -> Result<Vec<GrantId>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM grants WHERE subject_kind = $1 AND subject_id = $2 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $3) ORDER BY id",
        )
        .bind(subject.kind())
        .bind(subject.uuid().to_string())
        .bind(micros(at))
        .fetch_all(self.conn.ex())
        .await?;
        let ids: Vec<GrantId> = rows.iter().map(|r| Ok(GrantId(r.uuid("id")?))).collect::<Result<_, StoreError>>()?;
        for id in &ids {
            sqlx::query(
                "UPDATE grants SET revoked_at = $1, revoked_by = $2, version = version + 1 \
                 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(micros(at))
            .bind(by.to_owned())
            .bind(id.to_string())
            .execute(self.conn.ex())
            .await?;
        }
        Ok(ids)
    }
}
