//! Conformance suite: every case runs against SQLite (temp dir) and PostgreSQL (a fresh
//! database per test, from `WARDKEY_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`).
//! If PostgreSQL is unreachable the PostgreSQL half is skipped loudly, or fails when
//! `WARDKEY_REQUIRE_PG=1`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::future::BoxFuture;
use sqlx::{AnyConnection, AssertSqlSafe, Connection};
use std::collections::BTreeMap;
use std::sync::Arc;
use wardkey_audit::{
    AuditDraft, HashCache, HashExt, LogSigner, LogVerifier, Outcome, encode_hashes, verify_consistency,
    verify_inclusion,
};
use wardkey_domain::*;
use wardkey_store::*;

// ---------------------------------------------------------------------------------------------
// Harness

struct Db {
    store: Store,
    clock: Arc<ManualClock>,
    url: String,
    kind: BackendKind,
    _dir: Option<tempfile::TempDir>,
    pg: Option<wardkey_testkit::PgDatabase>,
}

fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(start_time()));
    let path = dir.path().join("data").join("wardkey.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::open(&url, clock.clone()).await.unwrap();
    Db { store, clock, url, kind: BackendKind::Sqlite, _dir: Some(dir), pg: None }
}

async fn postgres() -> Option<Db> {
    sqlx::any::install_default_drivers();
    let pg = wardkey_testkit::PgDatabase::create("wk_t").await?;
    let clock = Arc::new(ManualClock::new(start_time()));
    let store = Store::open(&pg.url, clock.clone()).await.unwrap();
    Some(Db { store, clock, url: pg.url.clone(), kind: BackendKind::Postgres, _dir: None, pg: Some(pg) })
}

impl Db {
    async fn finish(self) {
        self.store.close().await;
        if let Some(pg) = &self.pg {
            pg.drop_database().await;
        }
    }

    /// A connection to the same database, outside the store (for tampering).
    async fn raw(&self) -> AnyConnection {
        AnyConnection::connect(&self.url).await.unwrap()
    }

    async fn exec(&self, sql: &str) {
        let mut c = self.raw().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(&mut c).await.unwrap();
        let _ = c.close().await;
    }

    async fn drop_guards(&self) {
        match self.kind {
            BackendKind::Sqlite => {
                self.exec("DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;").await
            }
            BackendKind::Postgres => self.exec("DROP TRIGGER audit_events_append_only ON audit_events").await,
        }
    }

    async fn size(&self) -> u64 {
        self.store.read().await.unwrap().audit_tree_size().await.unwrap()
    }

    /// Writes `n` simple events (one job each).
    async fn events(&self, n: usize) {
        for i in 0..n {
            self.store
                .append_audit(vec![draft("test.event").with_target(format!("thing:{i}")).with_detail("i", i as u64)])
                .await
                .unwrap();
        }
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::sqlite().await;
                    super::$case(&db).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::postgres().await else { return };
                    super::$case(&db).await;
                    db.finish().await;
                }
            )*
        }
    };
}

conformance!(
    users_crud,
    version_conflict_writes_nothing,
    duplicate_username,
    username_skeletons,
    username_reuse_after_delete,
    job_error_rolls_back_state_and_events,
    failed_statement_inside_job_does_not_poison_it,
    job_without_audit_event_is_refused,
    concurrent_writes_have_contiguous_indices,
    group_commit_isolates_failing_job,
    revision_equals_tree_size,
    groups_and_members,
    service_accounts_crud,
    resource_types_and_resources,
    ancestors_walk_to_root,
    roles_templates_sod,
    grants_live_expired_revoked,
    api_tokens_and_meta,
    audit_queries,
    checkpoints_and_proofs,
    verify_ok_on_intact_log,
    append_only_guard_refuses_changes,
    tamper_changed_field,
    tamper_deleted_row,
    tamper_swapped_rows,
    tamper_inserted_row,
    tamper_rewrite_caught_by_checkpoint,
    reopen_continues_the_log,
    pagination,
    panicking_job_is_contained,
    snapshot_reads_are_consistent,
    two_stores_share_one_database,
    authn_passwords_factors_recovery,
    authn_sessions_lifecycle,
    heartbeat_writes_without_event,
    revisions_are_announced,
    trusted_checkpoint_catches_truncation,
    trusted_checkpoint_catches_rollback,
    trusted_checkpoint_catches_forged_fork,
    trusted_checkpoint_catches_rollback_then_continued,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_file_settings() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("wardkey-data");
    let clock = Arc::new(ManualClock::new(start_time()));
    let store = Store::open_sqlite_dir(&data, clock).await.unwrap();
    assert_eq!(store.backend(), BackendKind::Sqlite);
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    store.append_audit(vec![draft("x")]).await.unwrap();
    let url = format!("sqlite://{}", data.join(SQLITE_FILE).display());
    let mut c = AnyConnection::connect(&url).await.unwrap();
    let row = sqlx::query("PRAGMA journal_mode").fetch_one(&mut c).await.unwrap();
    let mode: String = sqlx::Row::try_get(&row, 0).unwrap();
    assert_eq!(mode, "wal");
    let _ = c.close().await;
    let mut r = store.read().await.unwrap();
    assert_eq!(r.audit_tree_size().await.unwrap(), 1);
    drop(r);
    store.close().await;
}

// ---------------------------------------------------------------------------------------------
// Builders

/// Store conformance is about the log, not the catalogue: synthetic action names are fine here.
fn draft(action: &str) -> AuditDraft {
    AuditDraft::uncatalogued("operator:test", action, Outcome::Success)
}

fn user(db: &Db, name: &str) -> User {
    let now = db.clock.now();
    User {
        id: UserId::generate(),
        username: name.to_owned(),
        display_name: Some(format!("{name} display")),
        email: Some(format!("{name}@example.org")),
        status: UserStatus::Active,
        hr: HrAttributes {
            employee_id: Some(format!("E-{name}")),
            department: Some("cardiology".into()),
            job_code: Some("RN-2".into()),
            ..Default::default()
        },
        verification: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn group(db: &Db, name: &str) -> Group {
    let now = db.clock.now();
    Group {
        id: GroupId::generate(),
        name: name.into(),
        description: None,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn rtype(db: &Db, name: &str) -> ResourceType {
    let now = db.clock.now();
    ResourceType {
        id: ResourceTypeId::generate(),
        name: name.into(),
        description: None,
        actions: vec!["read".into(), "write".into()],
        phi: true,
        decision_audit: Default::default(),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn resource(db: &Db, t: &ResourceType, name: &str, parent: Option<ResourceId>) -> Resource {
    let now = db.clock.now();
    Resource {
        id: ResourceId::generate(),
        type_id: t.id,
        name: name.into(),
        parent_id: parent,
        description: None,
        attributes: BTreeMap::from([("sensitivity".to_owned(), "high".to_owned())]),
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn role(db: &Db, name: &str, t: &ResourceType) -> Role {
    let now = db.clock.now();
    Role {
        id: RoleId::generate(),
        name: name.into(),
        description: Some("d".into()),
        permissions: vec![Permission { resource_type: t.name.clone(), actions: vec!["read".into()] }],
        privileged: false,
        session_policy: Default::default(),
        conditions: Default::default(),
        break_glass: false,
        created_at: now,
        updated_at: now,
        version: 1,
    }
}

fn grant(db: &Db, subject: Subject, role: RoleId, resource: Option<ResourceId>) -> Grant {
    let now = db.clock.now();
    Grant {
        id: GrantId::generate(),
        subject,
        role_id: role,
        resource_id: resource,
        source: GrantSource::Manual,
        requester: Some("user:req".into()),
        approver: Some("user:appr".into()),
        justification: Some("because".into()),
        starts_at: now,
        expires_at: None,
        created_at: now,
        created_by: "operator:test".into(),
        revoked_at: None,
        revoked_by: None,
        conditions: Default::default(),
        version: 1,
    }
}

type Job<T> = Box<dyn for<'t> FnOnce(&'t mut WriteTx) -> BoxFuture<'t, Result<T, StoreError>> + Send>;

/// Runs one write job that does `f` and audits `action`.
async fn w<T: Send + 'static>(db: &Db, action: &'static str, f: Job<T>) -> Result<Committed<T>, StoreError> {
    db.store
        .write(move |tx: &mut WriteTx| {
            Box::pin(async move {
                let v = f(tx).await?;
                tx.audit(draft(action));
                Ok(v)
            })
        })
        .await
}

macro_rules! job {
    (|$tx:ident| $body:expr) => {
        Box::new(move |$tx: &mut WriteTx| Box::pin(async move { $body }))
    };
}

async fn insert_user(db: &Db, name: &str) -> User {
    let u = user(db, name);
    let u2 = u.clone();
    w(db, "user.create", job!(|tx| tx.insert_user(&u2).await)).await.unwrap();
    u
}

// ---------------------------------------------------------------------------------------------
// Cases

async fn users_crud(db: &Db) {
    let mut u = user(db, "Alice");
    u.verification = Some(IdentityVerification {
        verified_by: "user:x".into(),
        method: "in_person_government_id".into(),
        verified_at: db.clock.now(),
    });
    let u2 = u.clone();
    let c = w(db, "user.create", job!(|tx| tx.insert_user(&u2).await)).await.unwrap();
    assert_eq!(c.event_indices, vec![0]);

    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_user(u.id).await.unwrap().as_ref(), Some(&u));
    assert_eq!(r.get_user_by_username("alice").await.unwrap().map(|x| x.id), Some(u.id));
    assert_eq!(r.get_user_by_username("ALICE").await.unwrap().map(|x| x.id), Some(u.id));
    assert_eq!(r.get_users_by_employee_id("E-Alice").await.unwrap().len(), 1);
    drop(r);

    db.clock.advance(Duration::seconds(5));
    let mut changed = u.clone();
    changed.display_name = Some("Alice B".into());
    changed.status = UserStatus::Suspended;
    changed.hr.department = Some("oncology".into());
    changed.updated_at = db.clock.now();
    let ch = changed.clone();
    let stored = w(db, "user.update", job!(|tx| tx.update_user(&ch, 1).await)).await.unwrap().value;
    assert_eq!(stored.version, 2);
    assert_eq!(stored.created_at, u.created_at);
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_user(u.id).await.unwrap(), Some(stored.clone()));

    let bob = insert_user(db, "bob").await;
    let all = r.list_users(&UserQuery::default(), &Page::first(100)).await.unwrap();
    assert_eq!(all.iter().map(|x| x.id).collect::<Vec<_>>(), vec![u.id, bob.id]);
    let q = UserQuery { status: Some(UserStatus::Suspended), ..Default::default() };
    assert_eq!(r.list_users(&q, &Page::first(100)).await.unwrap().len(), 1);
    let q = UserQuery { username_prefix: Some("B".into()), ..Default::default() };
    assert_eq!(r.list_users(&q, &Page::first(100)).await.unwrap()[0].id, bob.id);
    let q = UserQuery { username_prefix: Some("%".into()), ..Default::default() };
    assert!(r.list_users(&q, &Page::first(100)).await.unwrap().is_empty());
    // Prefixes are exact on both stores: `_` and `%` are characters, case folds, and a
    // character after the prefix never widens it (the range ends at the next code point).
    let under = insert_user(db, "bo_b").await;
    let bob2 = insert_user(db, "Bob2").await;
    let umlaut = insert_user(db, "Böb").await;
    let prefixed = |p: &str| UserQuery { username_prefix: Some(p.into()), ..Default::default() };
    let names = |v: Vec<User>| v.into_iter().map(|x| x.id).collect::<Vec<_>>();
    assert_eq!(names(r.list_users(&prefixed("bo"), &Page::first(100)).await.unwrap()), vec![bob.id, under.id, bob2.id]);
    assert_eq!(names(r.list_users(&prefixed("bo_"), &Page::first(100)).await.unwrap()), vec![under.id]);
    assert_eq!(names(r.list_users(&prefixed("BOB"), &Page::first(100)).await.unwrap()), vec![bob.id, bob2.id]);
    assert_eq!(names(r.list_users(&prefixed("bö"), &Page::first(100)).await.unwrap()), vec![umlaut.id]);
    assert!(r.list_users(&prefixed("bob3"), &Page::first(100)).await.unwrap().is_empty());
    let q = UserQuery { department: Some("oncology".into()), ..Default::default() };
    assert_eq!(r.list_users(&q, &Page::first(100)).await.unwrap()[0].id, u.id);

    let id = u.id;
    w(db, "user.delete", job!(|tx| tx.delete_user(id, 2).await)).await.unwrap();
    assert_eq!(r.get_user(u.id).await.unwrap(), None);
    assert_eq!(r.get_user_by_username("alice").await.unwrap(), None);
    let (gone, deleted_at) = r.get_user_including_deleted(u.id).await.unwrap().unwrap();
    assert_eq!(gone.version, 3);
    assert_eq!(deleted_at, Some(db.clock.now()));
    // Alice is gone; bob and the three prefix-test users remain.
    assert_eq!(
        names(r.list_users(&UserQuery::default(), &Page::first(100)).await.unwrap()),
        vec![bob.id, under.id, bob2.id, umlaut.id]
    );
    let q = UserQuery { include_deleted: true, ..Default::default() };
    assert_eq!(r.list_users(&q, &Page::first(100)).await.unwrap().len(), 5);
    // A deleted user can be neither updated nor deleted again.
    let ch = stored.clone();
    let e = w(db, "user.update", job!(|tx| tx.update_user(&ch, 3).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "user", .. }), "{e:?}");
}

async fn version_conflict_writes_nothing(db: &Db) {
    let u = insert_user(db, "carol").await;
    let before = db.size().await;
    let mut changed = u.clone();
    changed.display_name = Some("changed".into());
    let ch = changed.clone();
    let e = w(db, "user.update", job!(|tx| tx.update_user(&ch, 7).await)).await.unwrap_err();
    match e {
        StoreError::VersionConflict { kind, id, expected, actual } => {
            assert_eq!((kind, expected, actual), ("user", 7, 1));
            assert_eq!(id, u.id.to_string());
        }
        other => panic!("expected VersionConflict, got {other:?}"),
    }
    let id = u.id;
    let e = w(db, "user.delete", job!(|tx| tx.delete_user(id, 2).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict { expected: 2, actual: 1, .. }), "{e:?}");
    let missing = UserId::generate();
    let e = w(db, "user.delete", job!(|tx| tx.delete_user(missing, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "user", .. }), "{e:?}");
    assert_eq!(db.size().await, before);
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_user(u.id).await.unwrap(), Some(u));
}

async fn duplicate_username(db: &Db) {
    insert_user(db, "dave").await;
    let before = db.size().await;
    let u = user(db, "DAVE");
    let e = w(db, "user.create", job!(|tx| tx.insert_user(&u).await)).await.unwrap_err();
    match e {
        StoreError::Duplicate { kind, field, value } => {
            assert_eq!((kind, field, value.as_str()), ("user", "username", "DAVE"));
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
    // Renaming another user onto the name is refused too.
    let mut erin = insert_user(db, "erin").await;
    erin.username = "Dave".into();
    let e = w(db, "user.update", job!(|tx| tx.update_user(&erin, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { field: "username", .. }), "{e:?}");
    assert_eq!(db.size().await, before + 1);
}

/// Look-alike usernames (same Unicode TS #39 skeleton) are refused like duplicates, on
/// create and rename; users from before migration 0010 get their skeletons when the store
/// opens, and two existing users that already look alike do not stop it from opening (the
/// second keeps no skeleton; new names are still checked against the first).
async fn username_skeletons(db: &Db) {
    insert_user(db, "h.nurse").await;
    let cyrillic = user(db, "\u{4bb}.nurse");
    let e = w(db, "user.create", job!(|tx| tx.insert_user(&cyrillic).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { field: "username", .. }), "{e:?}");
    let mut other = insert_user(db, "x.nurse").await;
    other.username = "\u{ff48}.nurse".into();
    let e = w(db, "user.update", job!(|tx| tx.update_user(&other, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { field: "username", .. }), "{e:?}");
    // As if written before 0010: a look-alike pair and no skeletons at all.
    db.exec(
        "UPDATE users SET username = '\u{4bb}.nurse', username_key = '\u{4bb}.nurse' WHERE username = 'x.nurse'; \
         UPDATE users SET username_skeleton = NULL;",
    )
    .await;
    insert_user(db, "ann").await;
    db.exec("UPDATE users SET username_skeleton = NULL WHERE username = 'ann';").await;
    let reopened = Store::open(&db.url, db.clock.clone()).await.expect("opens despite the look-alike pair");
    let mut c = db.raw().await;
    let rows =
        sqlx::query("SELECT username, username_skeleton FROM users ORDER BY username").fetch_all(&mut c).await.unwrap();
    let got: Vec<(String, Option<String>)> =
        rows.iter().map(|r| (sqlx::Row::get::<String, _>(r, 0), sqlx::Row::get::<Option<String>, _>(r, 1))).collect();
    assert!(got.contains(&("ann".into(), Some("ann".into()))), "{got:?}");
    let pair: Vec<&Option<String>> = got.iter().filter(|(n, _)| n.ends_with(".nurse")).map(|(_, s)| s).collect();
    assert_eq!(pair.len(), 2, "{got:?}");
    assert_eq!(pair.iter().filter(|s| s.is_some()).count(), 1, "one of the pair keeps the skeleton: {got:?}");
    let _ = c.close().await;
    reopened.close().await;
    // New look-alikes are still refused.
    let again = user(db, "h.nurs\u{435}");
    let e = w(db, "user.create", job!(|tx| tx.insert_user(&again).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { field: "username", .. }), "{e:?}");
}

async fn username_reuse_after_delete(db: &Db) {
    let first = insert_user(db, "frank").await;
    let id = first.id;
    w(db, "user.delete", job!(|tx| tx.delete_user(id, 1).await)).await.unwrap();
    let second = insert_user(db, "frank").await;
    assert_ne!(first.id, second.id);
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_user_by_username("frank").await.unwrap().map(|u| u.id), Some(second.id));
    assert!(r.get_user_including_deleted(first.id).await.unwrap().unwrap().1.is_some());
    // The id itself is never reused.
    let mut again = first.clone();
    again.username = "frank2".into();
    let e = w(db, "user.create", job!(|tx| tx.insert_user(&again).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { kind: "user", field: "id", .. }), "{e:?}");
}

#[derive(Debug)]
enum TestErr {
    Store(#[allow(dead_code)] StoreError),
    Refused,
}

impl From<StoreError> for TestErr {
    fn from(e: StoreError) -> Self {
        TestErr::Store(e)
    }
}

async fn job_error_rolls_back_state_and_events(db: &Db) {
    insert_user(db, "first").await;
    let before = db.size().await;
    let u = user(db, "ghost");
    let id = u.id;
    let r: Result<Committed<()>, TestErr> = db
        .store
        .write(move |tx: &mut WriteTx| {
            Box::pin(async move {
                tx.insert_user(&u).await?;
                tx.audit(draft("user.create"));
                Err(TestErr::Refused)
            })
        })
        .await;
    assert!(matches!(r, Err(TestErr::Refused)), "{r:?}");
    assert_eq!(db.size().await, before);
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_user(id).await.unwrap(), None);
    assert_eq!(r.get_user_by_username("ghost").await.unwrap(), None);
    // And the next write carries on from the same index.
    drop(r);
    let c = w(db, "user.create", {
        let u = user(db, "next");
        job!(|tx| tx.insert_user(&u).await)
    })
    .await
    .unwrap();
    assert_eq!(c.event_indices, vec![before]);
}

async fn failed_statement_inside_job_does_not_poison_it(db: &Db) {
    insert_user(db, "henry").await;
    let dup = user(db, "HENRY");
    let ok = user(db, "irene");
    let ok_id = ok.id;
    let c = w(
        db,
        "user.create",
        job!(|tx| {
            let e = tx.insert_user(&dup).await.unwrap_err();
            assert!(matches!(e, StoreError::Duplicate { .. }));
            tx.insert_user(&ok).await
        }),
    )
    .await
    .unwrap();
    assert_eq!(c.revision, 2);
    assert!(db.store.read().await.unwrap().get_user(ok_id).await.unwrap().is_some());
}

async fn job_without_audit_event_is_refused(db: &Db) {
    let u = user(db, "silent");
    let id = u.id;
    let r = db.store.write(move |tx: &mut WriteTx| Box::pin(async move { tx.insert_user(&u).await })).await;
    assert!(matches!(r, Err(StoreError::NoAuditEvent)), "{r:?}");
    assert_eq!(db.size().await, 0);
    assert_eq!(db.store.read().await.unwrap().get_user(id).await.unwrap(), None);
    let r = db.store.append_audit(Vec::new()).await;
    assert!(matches!(r, Err(StoreError::NoAuditEvent)), "{r:?}");
}

async fn concurrent_writes_have_contiguous_indices(db: &Db) {
    let mut tasks = Vec::new();
    for i in 0..50 {
        let store = db.store.clone();
        let u = user(db, &format!("user{i}"));
        tasks.push(tokio::spawn(async move {
            store
                .write(move |tx: &mut WriteTx| {
                    Box::pin(async move {
                        tx.insert_user(&u).await?;
                        tx.audit(draft("user.create").with_target(u.id.target()));
                        Ok::<_, StoreError>(())
                    })
                })
                .await
        }));
    }
    let mut indices = Vec::new();
    for t in tasks {
        let c = t.await.unwrap().unwrap();
        assert_eq!(c.event_indices.len(), 1);
        assert_eq!(c.revision, c.event_indices[0] + 1);
        indices.push(c.event_indices[0]);
    }
    indices.sort();
    assert_eq!(indices, (0..50).collect::<Vec<u64>>());
    assert_eq!(db.size().await, 50);
    let events = db.store.read().await.unwrap().audit_events(&AuditQuery::default(), None, 1000).await.unwrap();
    assert_eq!(events.iter().map(|e| e.index).collect::<Vec<_>>(), (0..50).collect::<Vec<u64>>());
    let verifier = LogVerifier::from_signer(&LogSigner::generate("wardkey/test"));
    assert_eq!(db.store.verify_audit(&verifier).await.unwrap().tree_size, 50);
}

async fn group_commit_isolates_failing_job(db: &Db) {
    // A slow first job holds the writer so the others queue up and share one batch.
    let store = db.store.clone();
    let slow = tokio::spawn(async move {
        store
            .write(|tx: &mut WriteTx| {
                Box::pin(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                    tx.audit(draft("slow"));
                    Ok::<_, StoreError>(())
                })
            })
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = db.store.clone();
        let u = user(db, &format!("gc{i}"));
        tasks.push(tokio::spawn(async move {
            let id = u.id;
            let r: Result<Committed<()>, TestErr> = store
                .write(move |tx: &mut WriteTx| {
                    Box::pin(async move {
                        tx.insert_user(&u).await?;
                        tx.audit(draft("user.create"));
                        if i % 5 == 3 { Err(TestErr::Refused) } else { Ok(()) }
                    })
                })
                .await;
            (i, id, r)
        }));
    }
    slow.await.unwrap().unwrap();
    let mut ok_indices = Vec::new();
    let mut r = db.store.read().await.unwrap();
    for t in tasks {
        let (i, id, res) = t.await.unwrap();
        if i % 5 == 3 {
            assert!(matches!(res, Err(TestErr::Refused)));
            assert_eq!(r.get_user(id).await.unwrap(), None);
        } else {
            ok_indices.push(res.unwrap().event_indices[0]);
            assert!(r.get_user(id).await.unwrap().is_some());
        }
    }
    ok_indices.sort();
    assert_eq!(ok_indices, (1..=16).collect::<Vec<u64>>());
    assert_eq!(r.audit_tree_size().await.unwrap(), 17);
    let stats = db.store.write_stats();
    assert_eq!((stats.jobs_committed, stats.jobs_failed, stats.events), (17, 4, 17));
    // The jobs that queued behind the slow one went in together.
    assert!(stats.max_batch >= 10 && stats.commits <= 7, "{stats:?}");
}

async fn panicking_job_is_contained(db: &Db) {
    let u = user(db, "before");
    w(db, "user.create", job!(|tx| tx.insert_user(&u).await)).await.unwrap();
    let boom = user(db, "boom");
    let id = boom.id;
    let r = db
        .store
        .write(move |tx: &mut WriteTx| {
            Box::pin(async move {
                tx.insert_user(&boom).await?;
                tx.audit(draft("user.create"));
                if tx.queued_events() == 1 {
                    panic!("job bug");
                }
                Ok::<_, StoreError>(())
            })
        })
        .await;
    assert!(matches!(r, Err(StoreError::Database(_))), "{r:?}");
    assert_eq!(db.store.read().await.unwrap().get_user(id).await.unwrap(), None);
    let c = db.store.append_audit(vec![draft("after")]).await.unwrap();
    assert_eq!(c.event_indices, vec![1]);
}

/// Two Wardkey processes (nodes) on one database: the sequencer keeps indices contiguous and
/// each writer re-reads the tree size another one moved.
async fn two_stores_share_one_database(db: &Db) {
    let signer = LogSigner::generate("wardkey/test");
    let verifier = LogVerifier::from_signer(&signer);
    let other = Store::open(&db.url, db.clock.clone()).await.unwrap();
    other.set_signer(signer.clone());
    db.store.set_signer(signer);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 { db.store.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move {
            let c = store.append_audit(vec![draft("node.write"), draft("node.write2")]).await.unwrap();
            if i % 10 == 9 {
                store.checkpoint_now().await.unwrap();
            }
            c.event_indices
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let idx = t.await.unwrap();
        assert_eq!(idx[1], idx[0] + 1, "a job's events are adjacent");
        all.extend(idx);
    }
    all.sort();
    assert_eq!(all, (0..80).collect::<Vec<u64>>());
    other.checkpoint_now().await.unwrap();
    let report = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!((report.tree_size, report.unchecked_events), (80, 0));
    other.close().await;
}

async fn snapshot_reads_are_consistent(db: &Db) {
    db.events(3).await;
    let mut snap = db.store.read_snapshot().await.unwrap();
    assert!(snap.is_snapshot());
    assert_eq!(snap.audit_tree_size().await.unwrap(), 3);
    let u = insert_user(db, "later").await;
    assert_eq!(snap.audit_tree_size().await.unwrap(), 3);
    assert_eq!(snap.get_user(u.id).await.unwrap(), None);
    snap.end().await.unwrap();
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.audit_tree_size().await.unwrap(), 4);
    assert!(r.get_user(u.id).await.unwrap().is_some());
    drop(r);
    // A snapshot dropped without end() does not leak its transaction into the pool.
    for _ in 0..6 {
        let mut s = db.store.read_snapshot().await.unwrap();
        assert_eq!(s.audit_tree_size().await.unwrap(), 4);
    }
    db.events(1).await;
    for _ in 0..6 {
        assert_eq!(db.size().await, 5);
    }
}

async fn revision_equals_tree_size(db: &Db) {
    let c = db.store.append_audit(vec![draft("a"), draft("b"), draft("c")]).await.unwrap();
    assert_eq!(c.event_indices, vec![0, 1, 2]);
    assert_eq!(c.revision, 3);
    assert_eq!(db.size().await, 3);
    let u = insert_user(db, "rev").await;
    let c = w(db, "noop", job!(|tx| Ok(tx.get_user(u.id).await?.map(|u| u.version)))).await.unwrap();
    assert_eq!(c.value, Some(1));
    assert_eq!(c.revision, 5);
    assert_eq!(db.size().await, c.revision);
}

async fn groups_and_members(db: &Db) {
    let g = group(db, "Nurses");
    let g2 = g.clone();
    w(db, "group.create", job!(|tx| tx.insert_group(&g2).await)).await.unwrap();
    let dup = group(db, "nurses");
    let e = w(db, "group.create", job!(|tx| tx.insert_group(&dup).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { kind: "group", field: "name", .. }), "{e:?}");
    let alice = insert_user(db, "alice").await;
    let sa = ServiceAccount {
        id: ServiceAccountId::generate(),
        name: "etl".into(),
        description: None,
        owner_id: alice.id,
        status: ServiceAccountStatus::Active,
        created_at: db.clock.now(),
        updated_at: db.clock.now(),
        version: 1,
    };
    let sa2 = sa.clone();
    w(db, "sa.create", job!(|tx| tx.insert_service_account(&sa2).await)).await.unwrap();

    let gid = g.id;
    let (a, s) = (Member::User(alice.id), Member::ServiceAccount(sa.id));
    let added = w(
        db,
        "group.add_member",
        job!(|tx| Ok((tx.add_member(gid, a).await?, tx.add_member(gid, s).await?, tx.add_member(gid, a).await?))),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(added, (true, true, false));
    let nobody = Member::User(UserId::generate());
    let e = w(db, "group.add_member", job!(|tx| tx.add_member(gid, nobody).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "user", .. }), "{e:?}");
    let nogroup = GroupId::generate();
    let e = w(db, "group.add_member", job!(|tx| tx.add_member(nogroup, a).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "group", .. }), "{e:?}");

    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.list_members(g.id).await.unwrap(), vec![a, s]);
    assert_eq!(r.groups_of(a).await.unwrap(), vec![g.id]);
    assert_eq!(r.get_group_by_name("NURSES").await.unwrap().map(|x| x.id), Some(g.id));

    let mut renamed = g.clone();
    renamed.name = "RNs".into();
    let rn = renamed.clone();
    let stored = w(db, "group.update", job!(|tx| tx.update_group(&rn, 1).await)).await.unwrap().value;
    assert_eq!(stored.version, 2);
    assert_eq!(r.get_group(g.id).await.unwrap(), Some(stored));
    assert_eq!(r.list_groups(&Page::first(10)).await.unwrap().len(), 1);

    let removed =
        w(db, "group.remove_member", job!(|tx| Ok((tx.remove_member(gid, s).await?, tx.remove_member(gid, s).await?))))
            .await
            .unwrap()
            .value;
    assert_eq!(removed, (true, false));
    w(db, "group.delete", job!(|tx| tx.delete_group(gid, 2).await)).await.unwrap();
    assert_eq!(r.get_group(g.id).await.unwrap(), None);
    assert!(r.list_members(g.id).await.unwrap().is_empty());
    assert!(r.groups_of(a).await.unwrap().is_empty());
    // The name is free again.
    let again = group(db, "RNs");
    w(db, "group.create", job!(|tx| tx.insert_group(&again).await)).await.unwrap();
}

async fn service_accounts_crud(db: &Db) {
    let owner = insert_user(db, "owner").await;
    let other = insert_user(db, "other").await;
    let sa = ServiceAccount {
        id: ServiceAccountId::generate(),
        name: "Backup".into(),
        description: Some("nightly".into()),
        owner_id: owner.id,
        status: ServiceAccountStatus::Active,
        created_at: db.clock.now(),
        updated_at: db.clock.now(),
        version: 1,
    };
    let s2 = sa.clone();
    w(db, "sa.create", job!(|tx| tx.insert_service_account(&s2).await)).await.unwrap();
    let mut orphan = sa.clone();
    orphan.id = ServiceAccountId::generate();
    orphan.name = "orphan".into();
    orphan.owner_id = UserId::generate();
    let e = w(db, "sa.create", job!(|tx| tx.insert_service_account(&orphan).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "user", .. }), "{e:?}");
    let mut dup = sa.clone();
    dup.id = ServiceAccountId::generate();
    dup.name = "BACKUP".into();
    let e = w(db, "sa.create", job!(|tx| tx.insert_service_account(&dup).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { kind: "service_account", field: "name", .. }), "{e:?}");

    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_service_account(sa.id).await.unwrap(), Some(sa.clone()));
    assert_eq!(r.get_service_account_by_name("backup").await.unwrap().map(|s| s.id), Some(sa.id));
    let mut moved = sa.clone();
    moved.owner_id = other.id;
    moved.status = ServiceAccountStatus::Disabled;
    let m2 = moved.clone();
    let stored = w(db, "sa.update", job!(|tx| tx.update_service_account(&m2, 1).await)).await.unwrap().value;
    assert_eq!(stored.version, 2);
    assert_eq!(r.service_accounts_owned_by(other.id).await.unwrap().len(), 1);
    assert_eq!(r.list_service_accounts(&Page::first(10)).await.unwrap(), vec![stored]);
    let id = sa.id;
    let e = w(db, "sa.delete", job!(|tx| tx.delete_service_account(id, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict { .. }), "{e:?}");
    w(db, "sa.delete", job!(|tx| tx.delete_service_account(id, 2).await)).await.unwrap();
    assert_eq!(r.get_service_account(sa.id).await.unwrap(), None);
}

async fn resource_types_and_resources(db: &Db) {
    let t = rtype(db, "dataset");
    let t2 = t.clone();
    w(db, "rt.create", job!(|tx| tx.insert_resource_type(&t2).await)).await.unwrap();
    let dup = rtype(db, "Dataset");
    let e = w(db, "rt.create", job!(|tx| tx.insert_resource_type(&dup).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { kind: "resource_type", field: "name", .. }), "{e:?}");
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_resource_type(t.id).await.unwrap(), Some(t.clone()));
    assert_eq!(r.get_resource_type_by_name("DATASET").await.unwrap().map(|x| x.id), Some(t.id));
    let mut t3 = t.clone();
    t3.actions.push("export".into());
    t3.phi = false;
    let t4 = t3.clone();
    let stored = w(db, "rt.update", job!(|tx| tx.update_resource_type(&t4, 1).await)).await.unwrap().value;
    assert_eq!(r.list_resource_types().await.unwrap(), vec![stored.clone()]);

    let res = resource(db, &t, "ward-3", None);
    let res2 = res.clone();
    w(db, "res.create", job!(|tx| tx.insert_resource(&res2).await)).await.unwrap();
    assert_eq!(r.get_resource(res.id).await.unwrap(), Some(res.clone()));
    let bad = resource(db, &rtype(db, "nope"), "x", None);
    let e = w(db, "res.create", job!(|tx| tx.insert_resource(&bad).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "resource_type", .. }), "{e:?}");

    // In use: a resource of the type exists.
    let tid = t.id;
    let e = w(db, "rt.delete", job!(|tx| tx.delete_resource_type(tid, 2).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { kind: "resource_type", .. }), "{e:?}");

    let mut upd = res.clone();
    upd.description = Some("third floor".into());
    let u2 = upd.clone();
    let stored_res = w(db, "res.update", job!(|tx| tx.update_resource(&u2, 1).await)).await.unwrap().value;
    assert_eq!(r.get_resource(res.id).await.unwrap(), Some(stored_res));
    let rid = res.id;
    w(db, "res.delete", job!(|tx| tx.delete_resource(rid, 2).await)).await.unwrap();
    assert_eq!(r.get_resource(res.id).await.unwrap(), None);
    assert!(r.get_resource_including_deleted(res.id).await.unwrap().unwrap().1.is_some());

    // An unused type can go.
    let free = rtype(db, "application");
    let f2 = free.clone();
    w(db, "rt.create", job!(|tx| tx.insert_resource_type(&f2).await)).await.unwrap();
    let fid = free.id;
    w(db, "rt.delete", job!(|tx| tx.delete_resource_type(fid, 1).await)).await.unwrap();
    assert_eq!(r.get_resource_type(free.id).await.unwrap(), None);
    // A type named by a role's permissions cannot.
    let used = rtype(db, "record_set");
    let u3 = used.clone();
    let ro = role(db, "reader", &used);
    w(
        db,
        "setup",
        job!(|tx| {
            tx.insert_resource_type(&u3).await?;
            tx.insert_role(&ro).await
        }),
    )
    .await
    .unwrap();
    let uid = used.id;
    let e = w(db, "rt.delete", job!(|tx| tx.delete_resource_type(uid, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");
}

async fn ancestors_walk_to_root(db: &Db) {
    let t = rtype(db, "node");
    let root = resource(db, &t, "hospital", None);
    let a = resource(db, &t, "cardiology", Some(root.id));
    let b = resource(db, &t, "ward-1", Some(a.id));
    let c = resource(db, &t, "dataset", Some(b.id));
    let (t2, r2, a2, b2, c2) = (t.clone(), root.clone(), a.clone(), b.clone(), c.clone());
    w(
        db,
        "setup",
        job!(|tx| {
            tx.insert_resource_type(&t2).await?;
            for x in [&r2, &a2, &b2, &c2] {
                tx.insert_resource(x).await?;
            }
            Ok(())
        }),
    )
    .await
    .unwrap();
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.ancestors(c.id).await.unwrap(), vec![b.id, a.id, root.id]);
    assert_eq!(r.ancestors(root.id).await.unwrap(), Vec::<ResourceId>::new());
    assert!(matches!(r.ancestors(ResourceId::generate()).await, Err(StoreError::NotFound { .. })));
    let q = ResourceQuery { parent_id: Some(Some(a.id)), ..Default::default() };
    assert_eq!(r.list_resources(&q, &Page::first(10)).await.unwrap(), vec![b.clone()]);
    let q = ResourceQuery { parent_id: Some(None), type_id: Some(t.id) };
    assert_eq!(r.list_resources(&q, &Page::first(10)).await.unwrap(), vec![root.clone()]);
    assert_eq!(r.list_resources(&ResourceQuery::default(), &Page::first(10)).await.unwrap().len(), 4);

    // Sibling names are unique (ignoring case); the same name under another parent is fine.
    let dup = resource(db, &t, "Ward-1", Some(a.id));
    let e = w(db, "res.create", job!(|tx| tx.insert_resource(&dup).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { kind: "resource", field: "name", .. }), "{e:?}");
    let other = resource(db, &t, "ward-1", Some(root.id));
    w(db, "res.create", job!(|tx| tx.insert_resource(&other).await)).await.unwrap();
    let dup_root = resource(db, &t, "HOSPITAL", None);
    let e = w(db, "res.create", job!(|tx| tx.insert_resource(&dup_root).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { .. }), "{e:?}");

    // A parent with children cannot be deleted.
    let aid = a.id;
    let e = w(db, "res.delete", job!(|tx| tx.delete_resource(aid, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { kind: "resource", .. }), "{e:?}");

    // A cycle written behind the store's back is caught by the depth cap.
    db.exec(&format!("UPDATE resources SET parent_id = '{}' WHERE id = '{}'", c.id, root.id)).await;
    let e = r.ancestors(c.id).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { field: "parent_id", .. }), "{e:?}");
}

async fn roles_templates_sod(db: &Db) {
    let t = rtype(db, "dataset");
    let ro = role(db, "Reader", &t);
    let ro2 = role(db, "writer", &t);
    let (t2, a, b) = (t.clone(), ro.clone(), ro2.clone());
    w(
        db,
        "setup",
        job!(|tx| {
            tx.insert_resource_type(&t2).await?;
            tx.insert_role(&a).await?;
            tx.insert_role(&b).await
        }),
    )
    .await
    .unwrap();
    let dup = role(db, "READER", &t);
    let e = w(db, "role.create", job!(|tx| tx.insert_role(&dup).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Duplicate { kind: "role", field: "name", .. }), "{e:?}");
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_role(ro.id).await.unwrap(), Some(ro.clone()));
    assert_eq!(r.get_role_by_name("reader").await.unwrap().map(|x| x.id), Some(ro.id));
    assert_eq!(r.list_roles(&Page::first(10)).await.unwrap().len(), 2);
    assert_eq!(r.get_roles(&[ro2.id, ro.id, RoleId::generate(), ro.id]).await.unwrap().len(), 2);
    let mut priv_ = ro.clone();
    priv_.privileged = true;
    let p2 = priv_.clone();
    let stored = w(db, "role.update", job!(|tx| tx.update_role(&p2, 1).await)).await.unwrap().value;
    assert!(stored.privileged);
    assert_eq!(r.get_role(ro.id).await.unwrap(), Some(stored));

    let tpl = RoleTemplate {
        id: RoleTemplateId::generate(),
        name: "nurses".into(),
        description: None,
        rule: TemplateRule {
            all: vec![AttributeMatch {
                attribute: HrAttribute::JobCode,
                op: MatchOp::Prefix,
                values: vec!["RN-".into()],
            }],
        },
        role_ids: vec![ro.id],
        created_at: db.clock.now(),
        updated_at: db.clock.now(),
        version: 1,
    };
    let tp2 = tpl.clone();
    w(db, "tpl.create", job!(|tx| tx.insert_role_template(&tp2).await)).await.unwrap();
    let mut bad = tpl.clone();
    bad.id = RoleTemplateId::generate();
    bad.name = "bad".into();
    bad.role_ids = vec![RoleId::generate()];
    let e = w(db, "tpl.create", job!(|tx| tx.insert_role_template(&bad).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "role", .. }), "{e:?}");
    assert_eq!(r.get_role_template(tpl.id).await.unwrap(), Some(tpl.clone()));

    // Role named by a template: in use.
    let rid = ro.id;
    let e = w(db, "role.delete", job!(|tx| tx.delete_role(rid, 2).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { kind: "role", .. }), "{e:?}");
    let mut tpl2 = tpl.clone();
    tpl2.role_ids = vec![ro2.id];
    let tp3 = tpl2.clone();
    let stored_tpl = w(db, "tpl.update", job!(|tx| tx.update_role_template(&tp3, 1).await)).await.unwrap().value;
    assert_eq!(r.list_role_templates().await.unwrap(), vec![stored_tpl]);
    w(db, "role.delete", job!(|tx| tx.delete_role(rid, 2).await)).await.unwrap();
    assert_eq!(r.get_role(ro.id).await.unwrap(), None);
    assert!(r.get_role_including_deleted(ro.id).await.unwrap().is_some());
    let tid = tpl.id;
    w(db, "tpl.delete", job!(|tx| tx.delete_role_template(tid, 2).await)).await.unwrap();
    assert!(r.list_role_templates().await.unwrap().is_empty());
    let r2id = ro2.id;
    w(db, "role.delete", job!(|tx| tx.delete_role(r2id, 1).await)).await.unwrap();

    let rule = SodRule {
        id: SodRuleId::generate(),
        name: "no-self-approve".into(),
        description: None,
        left: SodItem::Role { role_id: ro.id },
        right: SodItem::Permission { resource_type: "dataset".into(), action: "write".into() },
        created_at: db.clock.now(),
        updated_at: db.clock.now(),
        version: 1,
    };
    let ru = rule.clone();
    w(db, "sod.create", job!(|tx| tx.insert_sod_rule(&ru).await)).await.unwrap();
    assert_eq!(r.get_sod_rule(rule.id).await.unwrap(), Some(rule.clone()));
    let mut rule2 = rule.clone();
    rule2.description = Some("x".into());
    let ru2 = rule2.clone();
    let stored = w(db, "sod.update", job!(|tx| tx.update_sod_rule(&ru2, 1).await)).await.unwrap().value;
    assert_eq!(r.list_sod_rules().await.unwrap(), vec![stored]);
    let sid = rule.id;
    let e = w(db, "sod.delete", job!(|tx| tx.delete_sod_rule(sid, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict { .. }), "{e:?}");
    w(db, "sod.delete", job!(|tx| tx.delete_sod_rule(sid, 2).await)).await.unwrap();
    assert!(r.list_sod_rules().await.unwrap().is_empty());
}

async fn grants_live_expired_revoked(db: &Db) {
    let t = rtype(db, "dataset");
    let ro = role(db, "reader", &t);
    let res = resource(db, &t, "labs", None);
    let alice = insert_user(db, "alice").await;
    let s = Subject::User(alice.id);
    let now = db.clock.now();
    let live = grant(db, s, ro.id, Some(res.id));
    let mut expiring = grant(db, s, ro.id, None);
    expiring.expires_at = Some(now + Duration::hours(1));
    let mut future = grant(db, s, ro.id, None);
    future.starts_at = now + Duration::days(1);
    let to_revoke = grant(db, s, ro.id, None);
    let (t2, ro2, res2) = (t.clone(), ro.clone(), res.clone());
    let gs = vec![live.clone(), expiring.clone(), future.clone(), to_revoke.clone()];
    w(
        db,
        "setup",
        job!(|tx| {
            tx.insert_resource_type(&t2).await?;
            tx.insert_role(&ro2).await?;
            tx.insert_resource(&res2).await?;
            for g in &gs {
                tx.insert_grant(g).await?;
            }
            Ok(())
        }),
    )
    .await
    .unwrap();
    let bad = grant(db, Subject::Group(GroupId::generate()), ro.id, None);
    let e = w(db, "grant.create", job!(|tx| tx.insert_grant(&bad).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { kind: "group", .. }), "{e:?}");

    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_grant(live.id).await.unwrap(), Some(live.clone()));
    let rid = to_revoke.id;
    let revoked = w(
        db,
        "grant.revoke",
        job!(|tx| {
            let at = tx.now();
            tx.revoke_grant(rid, 1, at, "user:admin").await
        }),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(revoked.version, 2);
    assert_eq!(revoked.revoked_by.as_deref(), Some("user:admin"));
    let e = w(db, "grant.revoke", job!(|tx| tx.revoke_grant(rid, 2, Utc::now(), "x").await)).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict { kind: "grant", .. }), "{e:?}");
    let e = w(db, "grant.revoke", job!(|tx| tx.revoke_grant(rid, 1, Utc::now(), "x").await)).await.unwrap_err();
    assert!(matches!(e, StoreError::VersionConflict { .. }), "{e:?}");
    let missing = GrantId::generate();
    let e = w(db, "grant.revoke", job!(|tx| tx.revoke_grant(missing, 1, Utc::now(), "x").await)).await.unwrap_err();
    assert!(matches!(e, StoreError::NotFound { .. }), "{e:?}");

    let ids = |v: Vec<Grant>| v.into_iter().map(|g| g.id).collect::<Vec<_>>();
    let q = GrantQuery { subject: Some(s), ..Default::default() };
    assert_eq!(ids(r.list_grants(&q, &Page::first(10)).await.unwrap()), vec![live.id, expiring.id, future.id]);
    db.clock.advance(Duration::hours(2));
    assert_eq!(ids(r.list_grants(&q, &Page::first(10)).await.unwrap()), vec![live.id, future.id]);
    let all = GrantQuery { include_inactive: true, ..q };
    assert_eq!(r.list_grants(&all, &Page::first(10)).await.unwrap().len(), 4);
    let by_res = GrantQuery { resource_id: Some(res.id), ..Default::default() };
    assert_eq!(ids(r.list_grants(&by_res, &Page::first(10)).await.unwrap()), vec![live.id]);
    let by_role = GrantQuery { role_id: Some(ro.id), include_inactive: true, ..Default::default() };
    assert_eq!(r.list_grants(&by_role, &Page::first(10)).await.unwrap().len(), 4);
    let now = db.clock.now();
    assert_eq!(ids(r.live_grants_for_subject(s, now).await.unwrap()), vec![live.id, future.id]);
    assert_eq!(ids(r.all_live_grants(now).await.unwrap()), vec![live.id, future.id]);
    assert!(r.live_grants_for_subject(Subject::User(UserId::generate()), now).await.unwrap().is_empty());

    // Role and resource with live grants are in use.
    let (roid, resid) = (ro.id, res.id);
    let e = w(db, "role.delete", job!(|tx| tx.delete_role(roid, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");
    let e = w(db, "res.delete", job!(|tx| tx.delete_resource(resid, 1).await)).await.unwrap_err();
    assert!(matches!(e, StoreError::InUse { .. }), "{e:?}");

    let revoked = w(
        db,
        "grant.revoke_all",
        job!(|tx| {
            let at = tx.now();
            tx.revoke_all_grants_for_subject(s, at, "system:leaver").await
        }),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(revoked, vec![live.id, future.id]);
    assert!(r.live_grants_for_subject(s, now).await.unwrap().is_empty());
    assert!(r.list_grants(&q, &Page::first(10)).await.unwrap().is_empty());
    w(db, "res.delete", job!(|tx| tx.delete_resource(resid, 1).await)).await.unwrap();
    w(db, "role.delete", job!(|tx| tx.delete_role(roid, 1).await)).await.unwrap();
}

async fn api_tokens_and_meta(db: &Db) {
    let tok = ApiToken {
        id: ApiTokenId::generate(),
        name: "ci".into(),
        scopes: vec![Scope::Admin, Scope::AuditRead],
        owner: TokenOwner::User(UserId::generate()),
        created_by: "operator:root".into(),
        created_at: db.clock.now(),
        expires_at: Some(db.clock.now() + Duration::days(30)),
        revoked_at: None,
        last_used_at: None,
    };
    let t2 = tok.clone();
    w(db, "token.create", job!(|tx| tx.insert_api_token(&t2, &[1, 2, 3, 0, 255]).await)).await.unwrap();
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_api_token(tok.id).await.unwrap(), Some((tok.clone(), vec![1, 2, 3, 0, 255])));
    let id = tok.id;
    db.clock.advance(Duration::minutes(1));
    w(
        db,
        "token.use",
        job!(|tx| {
            let at = tx.now();
            tx.touch_api_token(id, at).await
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.get_api_token(id).await.unwrap().unwrap().0.last_used_at, Some(db.clock.now()));
    let revoked = w(
        db,
        "token.revoke",
        job!(|tx| {
            let at = tx.now();
            Ok((tx.revoke_api_token(id, at).await?, tx.revoke_api_token(id, at).await?))
        }),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(revoked, (true, false));
    let listed = r.list_api_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(db.clock.now()));

    // Revocation by owner touches that owner's live tokens only; a live admin token owned by a
    // person or service account is "named", one owned by Wardkey itself is not.
    let now = db.clock.now();
    let sa = TokenOwner::ServiceAccount(ServiceAccountId::generate());
    let bootstrap = TokenOwner::System("bootstrap".into());
    let mk = |name: &str, owner: &TokenOwner, scopes: Vec<Scope>| ApiToken {
        id: ApiTokenId::generate(),
        name: name.into(),
        scopes,
        owner: owner.clone(),
        created_by: "operator:root".into(),
        created_at: now,
        expires_at: Some(now + Duration::days(1)),
        revoked_at: None,
        last_used_at: None,
    };
    let (a, b, c) =
        (mk("a", &sa, vec![Scope::Pdp]), mk("b", &sa, vec![Scope::Scim]), mk("boot", &bootstrap, vec![Scope::Admin]));
    let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
    w(
        db,
        "token.create",
        job!(|tx| {
            tx.insert_api_token(&a2, &[1]).await?;
            tx.insert_api_token(&b2, &[2]).await?;
            tx.insert_api_token(&c2, &[3]).await
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.get_api_token(a.id).await.unwrap().unwrap().0.owner, sa);
    assert!(!r.named_admin_token_exists(now).await.unwrap(), "the one admin token left is Wardkey's own");
    let sa2 = sa.clone();
    let ended = w(
        db,
        "token.revoke",
        job!(|tx| {
            let at = tx.now();
            tx.revoke_api_tokens_owned_by(&sa2, at).await
        }),
    )
    .await
    .unwrap()
    .value;
    let mut expected = vec![a.id, b.id];
    expected.sort();
    assert_eq!(ended, expected);
    assert!(r.get_api_token(c.id).await.unwrap().unwrap().0.revoked_at.is_none(), "other owners untouched");
    let named = mk("named", &TokenOwner::User(UserId::generate()), vec![Scope::Admin]);
    let n2 = named.clone();
    w(db, "token.create", job!(|tx| tx.insert_api_token(&n2, &[4]).await)).await.unwrap();
    assert!(r.named_admin_token_exists(now).await.unwrap());
    assert!(!r.named_admin_token_exists(now + Duration::days(2)).await.unwrap(), "an expired one does not count");

    assert_eq!(r.get_meta("install_id").await.unwrap(), None);
    w(db, "meta.set", job!(|tx| tx.set_meta("install_id", "abc").await)).await.unwrap();
    w(db, "meta.set", job!(|tx| tx.set_meta("install_id", "def").await)).await.unwrap();
    assert_eq!(r.get_meta("install_id").await.unwrap().as_deref(), Some("def"));
}

async fn audit_queries(db: &Db) {
    let t0 = db.clock.now();
    db.store
        .append_audit(vec![
            AuditDraft::new("user:a", wardkey_audit::Action::AuthLogin, Outcome::Success).with_target("user:a"),
            AuditDraft::new("user:b", wardkey_audit::Action::AuthLogin, Outcome::Denied)
                .with_reason("bad password")
                .with_source_ip("10.0.0.1")
                .with_request_id("req-1")
                .with_details(serde_json::json!({"z": 1, "a": [1.5, "x", null], "nested": {"k": true}})),
        ])
        .await
        .unwrap();
    db.clock.advance(Duration::minutes(10));
    db.store
        .append_audit(vec![
            AuditDraft::new("user:a", wardkey_audit::Action::GrantCreate, Outcome::Success)
                .with_target("grant:1")
                .with_approver("user:c")
                .with_request_ref("ar:1"),
            // NUL cannot be stored as PostgreSQL text; it is replaced, identically on both.
            AuditDraft::new("user:\0evil", wardkey_audit::Action::AuthLogin, Outcome::Failure),
        ])
        .await
        .unwrap();
    let mut r = db.store.read().await.unwrap();
    let all = r.audit_events(&AuditQuery::default(), None, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[1].draft.reason.as_deref(), Some("bad password"));
    assert_eq!(all[1].draft.outcome, Outcome::Denied);
    assert_eq!(all[1].draft.details["nested"]["k"], serde_json::json!(true));
    assert_eq!(all[1].time, t0);
    assert_eq!(all[2].draft.approver.as_deref(), Some("user:c"));
    assert_eq!(all[3].draft.actor, "user:\u{FFFD}evil");
    assert_eq!(r.audit_event(1).await.unwrap().as_ref(), Some(&all[1]));
    assert_eq!(r.audit_event(99).await.unwrap(), None);
    let q = AuditQuery { actor: Some("user:a".into()), ..Default::default() };
    assert_eq!(r.audit_events(&q, None, 100).await.unwrap().iter().map(|e| e.index).collect::<Vec<_>>(), vec![0, 2]);
    let q =
        AuditQuery { action: Some("auth.login".into()), since: Some(t0 + Duration::minutes(1)), ..Default::default() };
    assert_eq!(r.audit_events(&q, None, 100).await.unwrap().iter().map(|e| e.index).collect::<Vec<_>>(), vec![3]);
    let q = AuditQuery { until: Some(t0 + Duration::minutes(1)), ..Default::default() };
    assert_eq!(r.audit_events(&q, None, 100).await.unwrap().len(), 2);
    let q = AuditQuery { target: Some("grant:1".into()), ..Default::default() };
    assert_eq!(r.audit_events(&q, None, 100).await.unwrap()[0].index, 2);
    assert_eq!(r.audit_events(&AuditQuery::default(), Some(1), 1).await.unwrap()[0].index, 2);
    // The stored events re-hash to what the tree holds.
    let verifier = LogVerifier::from_signer(&LogSigner::generate("wardkey/test"));
    db.store.verify_audit(&verifier).await.unwrap();
}

async fn checkpoints_and_proofs(db: &Db) {
    let signer = LogSigner::generate("wardkey/test");
    let verifier = LogVerifier::from_signer(&signer);
    let e = db.store.checkpoint_now().await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { field: "signer", .. }), "{e:?}");
    db.store.set_signer(signer);
    assert_eq!(db.store.checkpoint_now().await.unwrap(), None);
    db.events(7).await;
    let cp = db.store.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(cp.size, 7);
    assert_eq!(db.store.checkpoint_now().await.unwrap(), None);
    let opened = verifier.open_checkpoint(&cp.note).unwrap();
    assert_eq!((opened.size, opened.root), (7, cp.root));

    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.tree_root(7).await.unwrap(), cp.root);
    assert_eq!(r.latest_checkpoint().await.unwrap(), Some(cp.clone()));
    for i in 0..7 {
        let leaf = r.audit_event(i).await.unwrap().unwrap().leaf_hash();
        let proof = r.inclusion_proof(i, 7).await.unwrap();
        verify_inclusion(i, 7, leaf, cp.root, &proof).unwrap();
    }
    assert!(matches!(r.inclusion_proof(7, 7).await, Err(StoreError::Invalid { .. })));
    assert!(matches!(r.inclusion_proof(3, 100).await, Err(StoreError::Invalid { .. })));
    assert!(matches!(r.tree_root(100).await, Err(StoreError::Invalid { .. })));

    db.clock.advance(Duration::seconds(30));
    db.events(6).await;
    let cp2 = db.store.checkpoint_now().await.unwrap().unwrap();
    assert_eq!(cp2.size, 13);
    assert_eq!(cp2.time, db.clock.now());
    let proof = r.consistency_proof(7, 13).await.unwrap();
    verify_consistency(7, cp.root, 13, cp2.root, &proof).unwrap();
    for from in 1..13 {
        let root_from = r.tree_root(from).await.unwrap();
        let proof = r.consistency_proof(from, 13).await.unwrap();
        verify_consistency(from, root_from, 13, cp2.root, &proof).unwrap();
        let leaf = r.audit_event(from).await.unwrap().unwrap().leaf_hash();
        verify_inclusion(from, 13, leaf, cp2.root, &r.inclusion_proof(from, 13).await.unwrap()).unwrap();
    }
    assert!(matches!(r.consistency_proof(13, 7).await, Err(StoreError::Invalid { .. })));
    assert_eq!(r.list_checkpoints().await.unwrap(), vec![cp.clone(), cp2.clone()]);
    let report = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!((report.tree_size, report.checkpoints, report.unchecked_events), (13, 2, 0));
    assert_eq!(report.root, cp2.root);
}

async fn verify_ok_on_intact_log(db: &Db) {
    let signer = LogSigner::generate("wardkey/test");
    let verifier = LogVerifier::from_signer(&signer);
    let empty = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!(empty.tree_size, 0);
    db.store.set_signer(signer);
    for round in 0..5 {
        db.events(round * 3 + 1).await;
        db.store.checkpoint_now().await.unwrap();
    }
    db.events(2).await;
    let report = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!(report.tree_size, 37);
    assert_eq!(report.checkpoints, 5);
    assert_eq!(report.unchecked_events, 2);
    // Another log's key does not vouch for these checkpoints.
    let stranger = LogVerifier::from_signer(&LogSigner::generate("wardkey/other"));
    assert!(db.store.verify_audit(&stranger).await.is_err());
}

async fn append_only_guard_refuses_changes(db: &Db) {
    db.events(3).await;
    let mut c = db.raw().await;
    assert!(sqlx::raw_sql("UPDATE audit_events SET actor = 'x' WHERE idx = 1").execute(&mut c).await.is_err());
    assert!(sqlx::raw_sql("DELETE FROM audit_events WHERE idx = 1").execute(&mut c).await.is_err());
    let _ = c.close().await;
    db.store.set_signer(LogSigner::generate("wardkey/test"));
    db.store.checkpoint_now().await.unwrap().unwrap();
    let mut c = db.raw().await;
    assert!(sqlx::raw_sql("DELETE FROM audit_checkpoints").execute(&mut c).await.is_err());
    let _ = c.close().await;
    assert_eq!(db.size().await, 3);
}

async fn tampered(db: &Db, sql: &str) -> wardkey_audit::VerifyFailure {
    let verifier = LogVerifier::from_signer(&LogSigner::generate("wardkey/test"));
    db.store.verify_audit(&verifier).await.unwrap();
    db.drop_guards().await;
    db.exec(sql).await;
    db.store.verify_audit(&verifier).await.unwrap_err()
}

async fn tamper_changed_field(db: &Db) {
    db.events(10).await;
    let f = tampered(db, "UPDATE audit_events SET actor = 'user:mallory' WHERE idx = 6").await;
    assert_eq!(f.index, 6, "{f}");
}

async fn tamper_deleted_row(db: &Db) {
    db.events(10).await;
    let f = tampered(db, "DELETE FROM audit_events WHERE idx = 4").await;
    assert_eq!(f.index, 4, "{f}");
}

async fn tamper_swapped_rows(db: &Db) {
    db.events(10).await;
    let f = tampered(
        db,
        "UPDATE audit_events SET idx = -1 WHERE idx = 3; \
         UPDATE audit_events SET idx = 3 WHERE idx = 8; \
         UPDATE audit_events SET idx = 8 WHERE idx = -1;",
    )
    .await;
    assert_eq!(f.index, 3, "{f}");
}

async fn tamper_inserted_row(db: &Db) {
    db.events(10).await;
    let f = tampered(
        db,
        "UPDATE audit_events SET idx = -idx - 1 WHERE idx >= 5; \
         UPDATE audit_events SET idx = -idx WHERE idx < 0; \
         INSERT INTO audit_events (idx, time, actor, action, target, outcome, reason, source_ip, request_id, \
             approver, request_ref, details, leaf, hashes) \
         SELECT 5, time, 'user:mallory', 'grant.create', target, outcome, reason, source_ip, request_id, \
             approver, request_ref, details, leaf, hashes FROM audit_events WHERE idx = 6;",
    )
    .await;
    assert_eq!(f.index, 5, "{f}");
}

/// An attacker who rewrites an event and recomputes every hash after it is caught by the
/// signed checkpoints, at the last checkpoint before the change.
async fn tamper_rewrite_caught_by_checkpoint(db: &Db) {
    let signer = LogSigner::generate("wardkey/test");
    let verifier = LogVerifier::from_signer(&signer);
    db.store.set_signer(signer);
    db.events(5).await;
    db.store.checkpoint_now().await.unwrap().unwrap();
    db.events(5).await;
    db.store.checkpoint_now().await.unwrap().unwrap();
    db.store.verify_audit(&verifier).await.unwrap();

    let mut r = db.store.read().await.unwrap();
    let mut events = r.audit_events(&AuditQuery::default(), None, 100).await.unwrap();
    drop(r);
    events[7].draft.actor = "user:mallory".into();
    let mut cache = HashCache::new();
    let mut rows = Vec::new();
    for e in &events {
        let leaf = e.leaf_hash();
        let hashes = cache.append(e.index, leaf).unwrap();
        rows.push((leaf, encode_hashes(&hashes)));
    }
    db.drop_guards().await;
    let mut c = db.raw().await;
    for i in 7..10 {
        sqlx::query("UPDATE audit_events SET actor = $1, leaf = $2, hashes = $3 WHERE idx = $4")
            .bind(events[i].draft.actor.clone())
            .bind(rows[i].0.as_bytes().to_vec())
            .bind(rows[i].1.clone())
            .bind(i as i64)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let _ = c.close().await;
    let f = db.store.verify_audit(&verifier).await.unwrap_err();
    assert_eq!(f.index, 5, "{f}");
}

async fn reopen_continues_the_log(db: &Db) {
    let signer = LogSigner::generate("wardkey/test");
    let verifier = LogVerifier::from_signer(&signer);
    db.store.set_signer(signer.clone());
    db.events(5).await;
    let u = insert_user(db, "persist").await;
    db.store.close().await;
    let e = db.store.append_audit(vec![draft("late")]).await.unwrap_err();
    assert!(matches!(e, StoreError::Closed), "{e:?}");

    let store = Store::open(&db.url, db.clock.clone()).await.unwrap();
    {
        let mut r = store.read().await.unwrap();
        assert_eq!(r.get_user(u.id).await.unwrap().map(|x| x.username), Some("persist".into()));
        // close() wrote a final checkpoint.
        assert_eq!(r.latest_checkpoint().await.unwrap().map(|c| c.size), Some(6));
    }
    let c = store.append_audit(vec![draft("after.reopen")]).await.unwrap();
    assert_eq!(c.event_indices, vec![6]);
    store.set_signer(signer);
    assert_eq!(store.checkpoint_now().await.unwrap().map(|c| c.size), Some(7));
    assert_eq!(store.verify_audit(&verifier).await.unwrap().tree_size, 7);
    store.close().await;

    let ro = Store::open_for_verify(&db.url).await.unwrap();
    assert_eq!(ro.verify_audit(&verifier).await.unwrap().tree_size, 7);
    let e = ro.append_audit(vec![draft("x")]).await.unwrap_err();
    assert!(matches!(e, StoreError::ReadOnly), "{e:?}");
    assert_eq!(ro.read().await.unwrap().audit_tree_size().await.unwrap(), 7);
    ro.close().await;
}

async fn pagination(db: &Db) {
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(insert_user(db, &format!("p{i}")).await.id);
    }
    let mut r = db.store.read().await.unwrap();
    let mut seen = Vec::new();
    let mut page = Page::first(3);
    loop {
        let got = r.list_users(&UserQuery::default(), &page).await.unwrap();
        if got.is_empty() {
            break;
        }
        seen.extend(got.iter().map(|u| u.id));
        page = Page::after(got[got.len() - 1].id.to_string(), 3);
    }
    assert_eq!(seen, ids);
    assert!(r.list_users(&UserQuery::default(), &Page::first(0)).await.unwrap().is_empty());
    let e = r.list_users(&UserQuery::default(), &Page::after("not-a-cursor", 3)).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid { field: "after", .. }), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Authentication state

async fn authn_passwords_factors_recovery(db: &Db) {
    let u = insert_user(db, "nurse.joy").await;
    let uid = u.id;
    let mut r = db.store.read().await.unwrap();
    assert!(r.get_password(uid).await.unwrap().is_none());
    let info = PasswordInfo { set_at: db.clock.now(), must_change: true, set_by: "operator:root".into() };
    let i2 = info.clone();
    w(db, "password.set", job!(|tx| tx.set_password(uid, "$argon2id$v=19$fake", &i2).await)).await.unwrap();
    assert_eq!(r.get_password(uid).await.unwrap(), Some((info.clone(), "$argon2id$v=19$fake".into())));
    // Replacing keeps one row; must_change can be cleared and set.
    let info2 = PasswordInfo { must_change: false, ..info.clone() };
    let i3 = info2.clone();
    w(db, "password.set", job!(|tx| tx.set_password(uid, "$argon2id$v=19$other", &i3).await)).await.unwrap();
    assert_eq!(r.get_password(uid).await.unwrap().unwrap().1, "$argon2id$v=19$other");
    let set =
        w(db, "password.compromised", job!(|tx| tx.set_password_must_change(uid, true).await)).await.unwrap().value;
    assert!(set);
    assert!(r.get_password(uid).await.unwrap().unwrap().0.must_change);

    // TOTP: pending until confirmed; each step accepted once, only forwards.
    let totp = Factor {
        id: FactorId::generate(),
        user_id: uid,
        kind: FactorKind::Totp,
        name: "phone".into(),
        confirmed: false,
        created_at: db.clock.now(),
        last_used_at: None,
    };
    let t2 = totp.clone();
    w(db, "factor.enrol", job!(|tx| tx.insert_factor(&t2, "v1.sealed", None).await)).await.unwrap();
    let tid = totp.id;
    let early = w(
        db,
        "x",
        job!(|tx| {
            let n = tx.now();
            tx.use_totp_step(tid, 100, n).await
        }),
    )
    .await
    .unwrap()
    .value;
    assert!(!early, "an unconfirmed factor accepts no code");
    let confirmed = w(
        db,
        "factor.confirm",
        job!(|tx| {
            let n = tx.now();
            tx.confirm_factor(tid, Some(100), n).await
        }),
    )
    .await
    .unwrap()
    .value;
    assert!(confirmed);
    let steps = w(
        db,
        "x",
        job!(|tx| {
            let n = tx.now();
            Ok((
                tx.use_totp_step(tid, 100, n).await?,
                tx.use_totp_step(tid, 101, n).await?,
                tx.use_totp_step(tid, 101, n).await?,
                tx.use_totp_step(tid, 99, n).await?,
            ))
        }),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(steps, (false, true, false, false));
    let fs = r.factor_secrets(uid, FactorKind::Totp).await.unwrap();
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].secret, "v1.sealed");
    assert_eq!(fs[0].last_used_step, Some(101));
    assert!(fs[0].factor.confirmed);

    // Passkeys: credential ids are unique across users.
    let pk = Factor {
        id: FactorId::generate(),
        kind: FactorKind::Webauthn,
        name: "yubikey".into(),
        confirmed: true,
        ..totp.clone()
    };
    let p2 = pk.clone();
    w(db, "factor.enrol", job!(|tx| tx.insert_factor(&p2, "{\"cred\":1}", Some("Y3JlZA")).await)).await.unwrap();
    let other = insert_user(db, "nurse.jane").await;
    let dup = Factor { id: FactorId::generate(), user_id: other.id, ..pk.clone() };
    let err = w(db, "factor.enrol", job!(|tx| tx.insert_factor(&dup, "{}", Some("Y3JlZA")).await)).await.unwrap_err();
    assert!(matches!(err, StoreError::Duplicate { field: "credential_id", .. }), "{err:?}");
    let pid = pk.id;
    w(
        db,
        "factor.use",
        job!(|tx| {
            let n = tx.now();
            tx.touch_factor(pid, Some("{\"cred\":2}"), n).await
        }),
    )
    .await
    .unwrap();
    let got = r.get_factor(pid).await.unwrap().unwrap();
    assert_eq!(got.secret, "{\"cred\":2}");
    assert_eq!(got.credential_id.as_deref(), Some("Y3JlZA"));
    assert_eq!(r.list_factors(uid).await.unwrap().len(), 2);

    // Recovery codes: each hash consumed once; replacing invalidates the old set.
    let hashes: Vec<String> = (0..10).map(|i| format!("h{i}")).collect();
    let h2 = hashes.clone();
    w(
        db,
        "recovery.issue",
        job!(|tx| {
            let n = tx.now();
            tx.replace_recovery_codes(uid, &h2, n).await
        }),
    )
    .await
    .unwrap();
    assert_eq!(r.unused_recovery_codes(uid).await.unwrap(), 10);
    let used = w(
        db,
        "recovery.use",
        job!(|tx| {
            let n = tx.now();
            Ok((
                tx.use_recovery_code(uid, "h3", n).await?,
                tx.use_recovery_code(uid, "h3", n).await?,
                tx.use_recovery_code(uid, "nope", n).await?,
            ))
        }),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(used, (true, false, false));
    assert_eq!(r.unused_recovery_codes(uid).await.unwrap(), 9);
    w(
        db,
        "recovery.issue",
        job!(|tx| {
            let n = tx.now();
            tx.replace_recovery_codes(uid, &["n1".to_string()], n).await
        }),
    )
    .await
    .unwrap();
    let old = w(
        db,
        "recovery.use",
        job!(|tx| {
            let n = tx.now();
            tx.use_recovery_code(uid, "h4", n).await
        }),
    )
    .await
    .unwrap()
    .value;
    assert!(!old);

    // Failure counters.
    assert_eq!(r.get_login_failures(uid).await.unwrap(), LoginFailures::default());
    let f = LoginFailures {
        consecutive: 3,
        last_failure_at: Some(db.clock.now()),
        locked_at: None,
        second_factor_consecutive: 7,
        second_factor_last_failure_at: Some(db.clock.now()),
    };
    let f2 = f.clone();
    w(db, "auth.login_failed", job!(|tx| tx.set_login_failures(uid, &f2).await)).await.unwrap();
    assert_eq!(r.get_login_failures(uid).await.unwrap(), f);

    // Reset removes factors and codes.
    let removed = w(db, "factor.reset", job!(|tx| tx.delete_all_factors(uid).await)).await.unwrap().value;
    assert_eq!(removed.len(), 2);
    assert!(r.list_factors(uid).await.unwrap().is_empty());
    assert_eq!(r.unused_recovery_codes(uid).await.unwrap(), 0);
}

fn session_for(db: &Db, user: UserId, stage: SessionStage) -> Session {
    let now = db.clock.now();
    Session {
        id: SessionId::generate(),
        user_id: user,
        stage,
        created_at: now,
        last_seen_at: now,
        expires_at: now + Duration::hours(12),
        password_at: Some(now),
        mfa_at: None,
        phishing_resistant_at: None,
        methods: vec!["password".into()],
        source_ip: Some("10.0.0.7".into()),
        user_agent: Some("test".into()),
        ended_at: None,
        ended_reason: None,
        ended_by: None,
    }
}

async fn authn_sessions_lifecycle(db: &Db) {
    let u = insert_user(db, "dr.house").await;
    let uid = u.id;
    let s1 = session_for(db, uid, SessionStage::SecondFactor);
    let s2 = session_for(db, uid, SessionStage::Active);
    let (a, b) = (s1.clone(), s2.clone());
    w(
        db,
        "auth.password_verified",
        job!(|tx| {
            tx.insert_session(&a, &[1u8; 32], Some("{\"kind\":\"x\"}")).await?;
            tx.insert_session(&b, &[2u8; 32], None).await
        }),
    )
    .await
    .unwrap();
    let mut r = db.store.read().await.unwrap();
    let found = r.get_session_by_token(&[1u8; 32]).await.unwrap().unwrap();
    assert_eq!(found.session, s1);
    assert_eq!(found.pending.as_deref(), Some("{\"kind\":\"x\"}"));
    assert!(r.get_session_by_token(&[9u8; 32]).await.unwrap().is_none());

    // Completing the second factor rotates the token: the old one no longer finds it.
    db.clock.advance(Duration::seconds(30));
    let now = db.clock.now();
    let adv = SessionAdvance {
        new_token_hash: vec![3u8; 32],
        stage: SessionStage::Active,
        mfa_at: Some(now),
        phishing_resistant_at: None,
        password_at: s1.password_at,
        methods: vec!["password".into(), "totp".into()],
        last_seen_at: now,
    };
    let id1 = s1.id;
    assert!(w(db, "auth.login", job!(|tx| tx.advance_session(id1, &adv).await)).await.unwrap().value);
    assert!(r.get_session_by_token(&[1u8; 32]).await.unwrap().is_none());
    let now_active = r.get_session_by_token(&[3u8; 32]).await.unwrap().unwrap();
    assert_eq!(now_active.session.stage, SessionStage::Active);
    assert_eq!(now_active.session.mfa_at, Some(now));
    assert_eq!(now_active.pending, None, "ceremony state is cleared by a completed step");

    let live =
        r.list_sessions(&SessionQuery { user: Some(uid), include_ended: false }, &Page::first(10)).await.unwrap();
    assert_eq!(live.len(), 2);

    // Ending: one by id, then all of the user's.
    let id2 = s2.id;
    let ended = w(
        db,
        "session.logout",
        job!(|tx| {
            let n = tx.now();
            Ok((tx.end_session(id2, n, "logout", "user:x").await?, tx.end_session(id2, n, "logout", "user:x").await?))
        }),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(ended, (true, false));
    let s3 = session_for(db, uid, SessionStage::Active);
    let c = s3.clone();
    w(db, "auth.login", job!(|tx| tx.insert_session(&c, &[4u8; 32], None).await)).await.unwrap();
    let all = w(
        db,
        "user.status",
        job!(|tx| {
            let n = tx.now();
            tx.end_user_sessions(uid, n, "user_disabled", "token:t").await
        }),
    )
    .await
    .unwrap()
    .value;
    let mut expect = vec![s1.id, s3.id];
    expect.sort();
    assert_eq!(all, expect);
    assert!(
        r.list_sessions(&SessionQuery { user: Some(uid), include_ended: false }, &Page::first(10))
            .await
            .unwrap()
            .is_empty()
    );
    let every =
        r.list_sessions(&SessionQuery { user: Some(uid), include_ended: true }, &Page::first(10)).await.unwrap();
    assert_eq!(every.len(), 3);
    let s3_after = r.get_session(s3.id).await.unwrap().unwrap();
    assert_eq!(s3_after.ended_reason.as_deref(), Some("user_disabled"));
    assert_eq!(s3_after.ended_by.as_deref(), Some("token:t"));
    // An ended session cannot be advanced or given ceremony state.
    let adv2 = SessionAdvance { new_token_hash: vec![5u8; 32], ..adv_clone(&s3_after, db.clock.now()) };
    let sid3 = s3.id;
    let moved = w(
        db,
        "x",
        job!(|tx| Ok((tx.advance_session(sid3, &adv2).await?, tx.set_session_pending(sid3, Some("{}")).await?))),
    )
    .await
    .unwrap()
    .value;
    assert_eq!(moved, (false, false));
}

fn adv_clone(s: &Session, now: DateTime<Utc>) -> SessionAdvance {
    SessionAdvance {
        new_token_hash: vec![0u8; 32],
        stage: s.stage,
        mfa_at: s.mfa_at,
        phishing_resistant_at: s.phishing_resistant_at,
        password_at: s.password_at,
        methods: s.methods.clone(),
        last_seen_at: now,
    }
}

async fn heartbeat_writes_without_event(db: &Db) {
    let u = insert_user(db, "dr.wilson").await;
    let s = session_for(db, u.id, SessionStage::Active);
    let c = s.clone();
    w(db, "auth.login", job!(|tx| tx.insert_session(&c, &[7u8; 32], None).await)).await.unwrap();
    let before = db.store.read().await.unwrap().audit_tree_size().await.unwrap();
    db.clock.advance(Duration::seconds(90));
    let at = db.clock.now();
    let moved = db.store.touch_sessions(vec![(s.id, at)]).await.unwrap();
    assert_eq!(moved.value, 1);
    let mut r = db.store.read().await.unwrap();
    assert_eq!(r.get_session(s.id).await.unwrap().unwrap().last_seen_at, at);
    assert_eq!(r.audit_tree_size().await.unwrap(), before, "a heartbeat appends no event");
    // Never backwards, and not on an ended session.
    let earlier = at - Duration::seconds(30);
    assert_eq!(db.store.touch_sessions(vec![(s.id, earlier)]).await.unwrap().value, 0);
    let sid = s.id;
    w(
        db,
        "session.logout",
        job!(|tx| {
            let n = tx.now();
            tx.end_session(sid, n, "logout", "user:x").await
        }),
    )
    .await
    .unwrap();
    db.clock.advance(Duration::seconds(90));
    assert_eq!(db.store.touch_sessions(vec![(s.id, db.clock.now())]).await.unwrap().value, 0);
}

/// Every commit raises the revision watch before the write returns; on PostgreSQL, another
/// store on the same database hears it through LISTEN/NOTIFY.
async fn revisions_are_announced(db: &Db) {
    let mut rx = db.store.revisions();
    let start = *rx.borrow_and_update();
    let c = db.store.append_audit(vec![draft("x.one")]).await.unwrap();
    assert_eq!(c.revision, start + 1);
    assert_eq!(*db.store.revisions().borrow(), c.revision, "raised before the write returned");
    // A reopened store starts at the stored revision.
    let other = Store::open(&db.url, db.clock.clone()).await.unwrap();
    assert_eq!(*other.revisions().borrow(), c.revision);
    if db.kind == BackendKind::Postgres {
        other.listen_for_other_nodes();
        let mut orx = other.revisions();
        // Give the LISTEN connection a moment, then commit on the first node.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let c2 = db.store.append_audit(vec![draft("x.two")]).await.unwrap();
        let heard = tokio::time::timeout(std::time::Duration::from_secs(10), orx.wait_for(|r| *r >= c2.revision)).await;
        assert!(heard.is_ok(), "the other node heard revision {}", c2.revision);
    }
    other.close().await;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints kept outside the store (audit witness)

impl Db {
    /// Drops the append-only guards of both audit tables (an attacker with database access).
    async fn drop_all_audit_guards(&self) {
        match self.kind {
            BackendKind::Sqlite => {
                self.exec(
                    "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete; \
                     DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;",
                )
                .await
            }
            BackendKind::Postgres => {
                self.exec("ALTER TABLE audit_events DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;")
                    .await
            }
        }
    }

    /// Cuts the log back: events from `events` on and checkpoints above `checkpoints` go.
    async fn cut_back(&self, events: u64, checkpoints: u64) {
        self.drop_all_audit_guards().await;
        self.exec(&format!(
            "DELETE FROM audit_events WHERE idx >= {events}; DELETE FROM audit_checkpoints WHERE size > {checkpoints};"
        ))
        .await;
    }
}

/// A log of 5 + 5 events with a checkpoint after each half; returns the signer, its verifier
/// and the second checkpoint opened (what the witness holds).
async fn witnessed_log(db: &Db) -> (LogSigner, LogVerifier, wardkey_audit::Checkpoint) {
    let signer = LogSigner::generate("wardkey/test");
    let verifier = LogVerifier::from_signer(&signer);
    db.store.set_signer(signer.clone());
    db.events(5).await;
    db.store.checkpoint_now().await.unwrap().unwrap();
    db.events(5).await;
    let witnessed = db.store.checkpoint_now().await.unwrap().unwrap();
    let trusted = verifier.open_checkpoint(&witnessed.note).unwrap();
    assert_eq!(trusted.size, 10);
    db.store.verify_audit_trusted(&verifier, Some(&trusted)).await.unwrap();
    (signer, verifier, trusted)
}

/// Events and the newest checkpoint removed together, back to a checkpoint boundary: the
/// store alone still verifies (nothing inside it remembers the lost tail); the trusted
/// checkpoint catches it.
async fn trusted_checkpoint_catches_truncation(db: &Db) {
    let (_, verifier, trusted) = witnessed_log(db).await;
    db.cut_back(5, 5).await;
    let alone = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!((alone.tree_size, alone.checkpoints), (5, 1));
    let f = db.store.verify_audit_trusted(&verifier, Some(&trusted)).await.unwrap_err();
    assert_eq!(f.index, 5, "{f}");
    assert!(f.reason.contains("behind the trusted checkpoint") && f.reason.contains("truncated"), "{f}");
}

/// The store put back to an older state that is consistent in itself (a restored backup with
/// an unsigned tail): behind the trusted checkpoint.
async fn trusted_checkpoint_catches_rollback(db: &Db) {
    let (_, verifier, trusted) = witnessed_log(db).await;
    db.cut_back(7, 5).await;
    let alone = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!((alone.tree_size, alone.unchecked_events), (7, 2));
    let f = db.store.verify_audit_trusted(&verifier, Some(&trusted)).await.unwrap_err();
    assert_eq!(f.index, 7, "{f}");
    assert!(f.reason.contains("holds 7 events") && f.reason.contains("covers 10"), "{f}");
    // An older trusted checkpoint the store still extends is fine.
    let older = {
        let mut r = db.store.read().await.unwrap();
        r.list_checkpoints().await.unwrap().remove(0)
    };
    let older = verifier.open_checkpoint(&older.note).unwrap();
    db.store.verify_audit_trusted(&verifier, Some(&older)).await.unwrap();
}

/// Someone with the signing key rewrites event 7, recomputes every hash after it and re-signs
/// the checkpoint at 10: the store verifies against itself, but not against the witness.
async fn trusted_checkpoint_catches_forged_fork(db: &Db) {
    let (signer, verifier, trusted) = witnessed_log(db).await;
    let mut r = db.store.read().await.unwrap();
    let mut events = r.audit_events(&AuditQuery::default(), None, 100).await.unwrap();
    drop(r);
    events[7].draft.actor = "user:mallory".into();
    let mut cache = HashCache::new();
    let mut rows = Vec::new();
    for e in &events {
        let leaf = e.leaf_hash();
        let hashes = cache.append(e.index, leaf).unwrap();
        rows.push((leaf, encode_hashes(&hashes)));
    }
    let forged_root = wardkey_audit::tree_root(10, &cache).unwrap();
    assert_ne!(forged_root, trusted.root);
    db.drop_all_audit_guards().await;
    let mut c = db.raw().await;
    for i in 7..10 {
        sqlx::query("UPDATE audit_events SET actor = $1, leaf = $2, hashes = $3 WHERE idx = $4")
            .bind(events[i].draft.actor.clone())
            .bind(rows[i].0.as_bytes().to_vec())
            .bind(rows[i].1.clone())
            .bind(i as i64)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let time = start_time();
    sqlx::query("UPDATE audit_checkpoints SET root = $1, note = $2 WHERE size = 10")
        .bind(forged_root.as_bytes().to_vec())
        .bind(signer.sign_checkpoint(10, forged_root, time))
        .execute(&mut c)
        .await
        .unwrap();
    let _ = c.close().await;

    // Same size, different root.
    let alone = db.store.verify_audit(&verifier).await.unwrap();
    assert_eq!((alone.tree_size, alone.checkpoints), (10, 2));
    let f = db.store.verify_audit_trusted(&verifier, Some(&trusted)).await.unwrap_err();
    assert!(f.reason.contains("inconsistent with the trusted checkpoint") && f.reason.contains("fork"), "{f}");
    assert!(f.reason.contains(&trusted.root.to_string()) && f.reason.contains(&forged_root.to_string()), "{f}");

    // The forged log grows on (a fresh store, as after a restart): still caught.
    let store = Store::open(&db.url, db.clock.clone()).await.unwrap();
    store.set_signer(signer);
    store.append_audit(vec![draft("after.fork"), draft("after.fork")]).await.unwrap();
    assert_eq!(store.checkpoint_now().await.unwrap().map(|c| c.size), Some(12));
    assert_eq!(store.verify_audit(&verifier).await.unwrap().tree_size, 12);
    let f = store.verify_audit_trusted(&verifier, Some(&trusted)).await.unwrap_err();
    assert!(f.reason.contains("at size 10"), "{f}");
    store.close().await;
}

/// Cut back to a checkpoint and written on past the witnessed size with other events: the
/// store is longer than the trusted checkpoint and self-consistent, but it forked from it.
async fn trusted_checkpoint_catches_rollback_then_continued(db: &Db) {
    let (signer, verifier, trusted) = witnessed_log(db).await;
    db.cut_back(5, 5).await;
    let store = Store::open(&db.url, db.clock.clone()).await.unwrap();
    store.set_signer(signer);
    for i in 0..8 {
        store.append_audit(vec![draft("rewritten.history").with_detail("i", i as u64)]).await.unwrap();
    }
    assert_eq!(store.checkpoint_now().await.unwrap().map(|c| c.size), Some(13));
    let alone = store.verify_audit(&verifier).await.unwrap();
    assert_eq!(alone.tree_size, 13);
    let f = store.verify_audit_trusted(&verifier, Some(&trusted)).await.unwrap_err();
    assert!(f.reason.contains("inconsistent with the trusted checkpoint"), "{f}");
    // A trusted checkpoint by another key is refused before anything is compared.
    let stranger = LogSigner::generate("wardkey/test");
    let foreign = stranger.sign_checkpoint(13, alone.root, start_time());
    let e = wardkey_audit::open_trusted_checkpoint(&verifier, &foreign).unwrap_err();
    assert!(e.contains("not signed by the verifier key"), "{e}");
    let e = wardkey_audit::open_trusted_checkpoint(&verifier, "wardkey/test\nnot a size\n").unwrap_err();
    assert!(e.contains("malformed"), "{e}");
    store.close().await;
}
