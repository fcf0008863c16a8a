#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The audit-event catalogue: well-formed, published (`docs/audit-events.md` matches the code),
//! and complete (no action string in the workspace's sources is missing from it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;
use wardkey_audit::catalogue::{self, CONTEXT_FIELDS};
use wardkey_audit::{Action, AuditDraft, Outcome, Safeguard, Target, TargetKind};
use wardkey_domain::{
    ApiTokenId, FactorId, ForbidRuleId, GrantId, GroupId, Member, ResourceId, ResourceTypeId, RoleId, RoleTemplateId,
    ServiceAccountId, SessionId, SodRuleId, Subject, UserId,
};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn looks_like_action(s: &str) -> bool {
    let Some((ns, verb)) = s.split_once('.') else { return false };
    let part = |p: &str| {
        p.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    };
    part(ns) && part(verb)
}

// ------------------------------------------------------------------------ well-formed

#[test]
fn wire_names_are_unique_well_formed_and_round_trip() {
    let mut seen = BTreeSet::new();
    for a in Action::ALL {
        let s = a.as_str();
        assert!(looks_like_action(s), "{s} is not `namespace.verb` in lower snake case");
        assert!(seen.insert(s), "{s} appears twice");
        assert_eq!(Action::parse(s), Some(*a));
        assert_eq!(s.parse::<Action>().ok(), Some(*a));
        assert_eq!(a.to_string(), s);
        assert_eq!(String::from(*a), s);
        assert_eq!(serde_json::to_value(a).ok(), Some(serde_json::Value::String(s.to_owned())));
        assert_eq!(serde_json::from_value::<Action>(serde_json::json!(s)).ok(), Some(*a));
        assert_eq!(a.namespace(), s.split_once('.').map(|(n, _)| n).unwrap_or_default());
    }
    assert_eq!(Action::parse("grant.creat"), None);
    assert_eq!(Action::parse("GRANT.CREATE"), None);
    assert!(serde_json::from_value::<Action>(serde_json::json!("nope.never")).is_err());
    assert!("nope.never".parse::<Action>().is_err());
}

#[test]
fn every_action_is_documented() {
    for a in Action::ALL {
        assert!(!a.safeguards().is_empty(), "{a} evidences no safeguard");
        let sgs: BTreeSet<_> = a.safeguards().iter().collect();
        assert_eq!(sgs.len(), a.safeguards().len(), "{a} lists a safeguard twice");
        assert!(a.summary().ends_with('.') && a.summary().len() > 10, "{a}: summary should be a sentence");
        let mut names = BTreeSet::new();
        for f in a.details() {
            assert!(names.insert(f.name), "{a}: details key {} listed twice", f.name);
            assert!(!f.meaning.is_empty(), "{a}: details key {} has no meaning", f.name);
            assert!(CONTEXT_FIELDS.iter().all(|c| c.name != f.name), "{a}: {} is a context key", f.name);
        }
    }
    // Every safeguard the catalogue names is evidenced by something.
    for sg in Safeguard::ALL {
        assert!(Action::ALL.iter().any(|a| a.safeguards().contains(sg)), "{sg} is evidenced by no action");
    }
}

#[test]
fn the_draft_constructor_takes_the_enum_and_stores_the_wire_name() {
    let d = AuditDraft::new("system:test", Action::GrantCreate, Outcome::Success)
        .with_target(Target::grant(GrantId(uuid::Uuid::nil())));
    assert_eq!(d.action, "grant.create");
    assert_eq!(d.target.as_deref(), Some("grant:00000000-0000-0000-0000-000000000000"));
    assert_eq!(d.catalogued_action(), Some(Action::GrantCreate));
    // Synthetic events for tests and benches go through the loudly named escape hatch.
    let s = AuditDraft::uncatalogued("system:test", "bench.probe", Outcome::Success);
    assert_eq!(s.action, "bench.probe");
    assert_eq!(s.catalogued_action(), None);
    assert_eq!(
        AuditDraft::uncatalogued("system:test", "grant.create", Outcome::Success),
        d.clone().with_target(None::<String>)
    );
}

#[test]
fn typed_targets_render_as_the_stored_strings_did() {
    let u = uuid::Uuid::now_v7();
    let cases: Vec<(Target, String, TargetKind)> = vec![
        (Target::user(UserId(u)), UserId(u).target(), TargetKind::User),
        (Target::group(GroupId(u)), GroupId(u).target(), TargetKind::Group),
        (Target::service_account(ServiceAccountId(u)), ServiceAccountId(u).target(), TargetKind::ServiceAccount),
        (Target::resource_type(ResourceTypeId(u)), ResourceTypeId(u).target(), TargetKind::ResourceType),
        (Target::resource(ResourceId(u)), ResourceId(u).target(), TargetKind::Resource),
        (Target::role(RoleId(u)), RoleId(u).target(), TargetKind::Role),
        (Target::role_template(RoleTemplateId(u)), RoleTemplateId(u).target(), TargetKind::RoleTemplate),
        (Target::sod_rule(SodRuleId(u)), SodRuleId(u).target(), TargetKind::SodRule),
        (Target::forbid_rule(ForbidRuleId(u)), ForbidRuleId(u).target(), TargetKind::ForbidRule),
        (Target::grant(GrantId(u)), GrantId(u).target(), TargetKind::Grant),
        (Target::api_token(ApiTokenId(u)), ApiTokenId(u).target(), TargetKind::ApiToken),
        (Target::session(SessionId(u)), SessionId(u).target(), TargetKind::Session),
        (Target::factor(FactorId(u)), FactorId(u).target(), TargetKind::Factor),
        (Target::hr_import(u), format!("hr_import:{u}"), TargetKind::HrImport),
        (
            Target::from(Member::ServiceAccount(ServiceAccountId(u))),
            Member::ServiceAccount(ServiceAccountId(u)).target(),
            TargetKind::ServiceAccount,
        ),
        (Target::from(Subject::Group(GroupId(u))), Subject::Group(GroupId(u)).target(), TargetKind::Group),
    ];
    for (t, old, kind) in cases {
        assert_eq!(t.to_string(), old);
        assert_eq!(t.kind(), kind);
        assert_eq!(t.id(), u.to_string());
        assert_eq!(Target::parse(&old), Some(t.clone()));
        assert_eq!(TargetKind::from_prefix(kind.as_str()), Some(kind));
    }
    assert_eq!(Target::parse("nonsense"), None);
    assert_eq!(Target::parse("planet:earth"), None);
    assert_eq!(Target::new(TargetKind::Any, u), None);
    assert_eq!(Target::new(TargetKind::None, u), None);
}

// ------------------------------------------------------------------------ published

#[test]
fn the_committed_doc_matches_the_catalogue() {
    let path = workspace_root().join("docs/audit-events.md");
    let generated = catalogue::markdown();
    if std::env::var_os("WARDKEY_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != generated {
        let first = committed.lines().zip(generated.lines()).position(|(a, b)| a != b);
        panic!(
            "docs/audit-events.md does not match crates/wardkey-audit/src/catalogue.rs (first difference at line {}).\n\
             Regenerate it with:\n\n    WARDKEY_BLESS=1 cargo test -p wardkey-audit --test catalogue\n",
            first.map_or_else(|| "end of file".to_owned(), |i| (i + 1).to_string())
        );
    }
    for a in Action::ALL {
        assert!(generated.contains(&format!("### `{}`", a.as_str())), "{a} has no section");
    }
}

// ------------------------------------------------------------------------ complete (tidy)

/// Functions whose arguments include an audit action name. A literal passed anywhere in their
/// argument list that looks like `namespace.verb` is taken for an action.
const AUDIT_FNS: &[&str] =
    &["draft", "event", "user_event", "anon_event", "scim_event", "audit_refusal", "set_pending"];

/// Collects `namespace.verb` literals in action position: anywhere in an audit call's arguments,
/// and in the value of a `let action = …` binding (but not in the arguments of other calls
/// there, such as `text(&action.name, "action.name")`, a field name).
#[derive(Default)]
struct Finder {
    found: Vec<String>,
    /// Whether literals seen now are in action position (innermost decision last).
    context: Vec<bool>,
    /// Inside `#[cfg(test)]` or `#[test]` code.
    in_test: bool,
    /// Uses of `AuditDraft::uncatalogued` outside test code.
    escapes: usize,
}

impl Finder {
    fn with(&mut self, on: bool, f: impl FnOnce(&mut Self)) {
        self.context.push(on);
        f(self);
        self.context.pop();
    }
}

fn binds_action(p: &syn::Pat) -> bool {
    match p {
        syn::Pat::Ident(i) => i.ident == "action",
        syn::Pat::Tuple(t) => t.elems.iter().any(binds_action),
        syn::Pat::Type(t) => binds_action(&t.pat),
        _ => false,
    }
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_lit_str(&mut self, lit: &'ast syn::LitStr) {
        if self.context.last() == Some(&true) {
            let s = lit.value();
            if looks_like_action(&s) {
                self.found.push(s);
            }
        }
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        let audit = match &*call.func {
            syn::Expr::Path(p) => {
                let segs: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
                let last = segs.last().map(String::as_str).unwrap_or_default();
                AUDIT_FNS.contains(&last)
                    || (last == "new" && segs.iter().rev().nth(1).is_some_and(|s| s == "AuditDraft"))
            }
            _ => false,
        };
        self.visit_expr(&call.func);
        self.with(audit, |me| call.args.iter().for_each(|a| me.visit_expr(a)));
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        self.visit_expr(&call.receiver);
        let audit = AUDIT_FNS.contains(&call.method.to_string().as_str());
        self.with(audit, |me| call.args.iter().for_each(|a| me.visit_expr(a)));
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        let on = binds_action(&local.pat) || self.context.last() == Some(&true);
        self.with(on, |me| syn::visit::visit_local(me, local));
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        // A new function starts outside any action position.
        let test = self.in_test || is_test_code(&f.attrs);
        let was = std::mem::replace(&mut self.in_test, test);
        self.with(false, |me| syn::visit::visit_item_fn(me, f));
        self.in_test = was;
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test = self.in_test || is_test_code(&m.attrs);
        let was = std::mem::replace(&mut self.in_test, test);
        syn::visit::visit_item_mod(self, m);
        self.in_test = was;
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if !self.in_test && p.segments.last().is_some_and(|s| s.ident == "uncatalogued") {
            self.escapes += 1;
        }
        syn::visit::visit_path(self, p);
    }
}

/// `#[test]`, `#[cfg(test)]` (and `#[tokio::test]` etc.): code that never ships.
fn is_test_code(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let path = a.path();
        if path.segments.last().is_some_and(|s| s.ident == "test") {
            return true;
        }
        path.is_ident("cfg") && a.parse_args::<syn::Meta>().is_ok_and(|m| m.path().is_ident("test"))
    })
}

fn find_actions(source: &str) -> Result<Vec<String>, syn::Error> {
    Ok(scan(source)?.found)
}

fn scan(source: &str) -> Result<Finder, syn::Error> {
    let file = syn::parse_file(source)?;
    let mut f = Finder::default();
    f.visit_file(&file);
    Ok(f)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn the_scanner_finds_action_strings_where_events_are_built() {
    let fixture = r#"
        fn f(caller: &Caller, x: bool) {
            let mut e = draft(&caller, "made.up", None);
            let e2 = wardkey_audit::AuditDraft::new("anonymous", "also.made_up", Outcome::Success);
            let action = if x { "auth.login" } else { "nope.never" };
            let (action, why) = if x { ("session.timeout", "timeout") } else { ("gone.away", "expired") };
            ctx.event(caller, "via.method", None, "why", json!({ "not.this": 1 }));
            let unrelated = ServiceError::invalid("resource.id", "field names are not actions");
            let action = text(&action.name, "action.name")?.to_owned();
            let action = "api_token.use".to_owned();
            let e3 = event(&caller, Action::UserCreate, user.id);
        }
    "#;
    let mut found = find_actions(fixture).unwrap_or_else(|e| panic!("fixture does not parse: {e}"));
    found.sort();
    assert_eq!(
        found,
        [
            "also.made_up",
            "api_token.use",
            "auth.login",
            "gone.away",
            "made.up",
            "nope.never",
            "session.timeout",
            "via.method"
        ]
    );
}

#[test]
fn every_action_string_in_the_sources_is_catalogued() {
    let crates = workspace_root().join("crates");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap_or_else(|e| panic!("{}: {e}", crates.display())).flatten() {
        // The bench harness writes synthetic events (`bench.probe`) into scratch stores only.
        if entry.file_name() == "wardkey-bench" {
            continue;
        }
        rust_files(&entry.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files under {}", files.len(), crates.display());
    let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen = 0usize;
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let found = find_actions(&source).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        seen += found.len();
        for s in found {
            if Action::parse(&s).is_none() {
                let rel = path.strip_prefix(workspace_root()).unwrap_or(path).display().to_string();
                missing.entry(s).or_default().insert(rel);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "audit actions used in the sources but missing from crates/wardkey-audit/src/catalogue.rs \
         (add them there, with target, details, category and HIPAA safeguard, then regenerate \
         docs/audit-events.md):\n{}",
        missing
            .iter()
            .map(|(a, files)| format!("  {a}  ({})", files.iter().cloned().collect::<Vec<_>>().join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("{} source files, {seen} action string literals, all catalogued", files.len());
}

#[test]
fn the_scanner_tells_test_code_from_shipped_code() {
    let fixture = r#"
        fn shipped() {
            let e = AuditDraft::uncatalogued("system:x", "made.up", Outcome::Success);
        }
        #[cfg(test)]
        mod tests {
            fn helper() { let e = AuditDraft::uncatalogued("a", "test.event", Outcome::Success); }
        }
        #[test]
        fn a_test() { let e = wardkey_audit::AuditDraft::uncatalogued("a", "test.event", Outcome::Success); }
        #[tokio::test]
        async fn an_async_test() { let e = AuditDraft::uncatalogued("a", "test.event", Outcome::Success); }
    "#;
    let f = scan(fixture).unwrap_or_else(|e| panic!("fixture does not parse: {e}"));
    assert_eq!(f.escapes, 1);
}

/// `AuditDraft::uncatalogued` is for synthetic events in tests and benches. Shipped code that
/// used it would write events alerts, SIEM exports and the decision-index follower cannot see.
#[test]
fn the_uncatalogued_escape_hatch_is_used_only_by_tests_and_benches() {
    let crates = workspace_root().join("crates");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap_or_else(|e| panic!("{}: {e}", crates.display())).flatten() {
        if entry.file_name() == "wardkey-bench" {
            continue;
        }
        rust_files(&entry.path().join("src"), &mut files);
    }
    assert!(files.len() > 50, "found only {} source files under {}", files.len(), crates.display());
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| {
            let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            scan(&source).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display())).escapes > 0
        })
        .map(|p| p.strip_prefix(workspace_root()).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "AuditDraft::uncatalogued is for tests and benches; use AuditDraft::new with a catalogued Action in:\n  {}",
        offenders.join("\n  ")
    );
}
