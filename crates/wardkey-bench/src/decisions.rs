//! In-process decisions: Wardkey's index against Cedar (`cedar-policy`) and casbin (casbin-rs)
//! on the same model and the same 1,024 rotating requests, in the same run. Every engine must
//! give the same answer to every request before a figure is printed.
//!
//! How each peer holds the model (the setups most favourable to them that we know of):
//! - **Cedar**: users, groups and the resource tree as entities (groups and parents as Cedar
//!   parents), one `permit` per grant and permission (`principal == User` or `principal in
//!   Group`, `action in [...]`, `resource is T` or `resource is T in Scope`, expiry and MFA in
//!   `when`), and one `forbid` for inactive users. Cedar evaluates every policy it is given, so
//!   each request gets the policy *slice* for its principal (the forbid plus the permits of its
//!   grants and its group's), prepared before timing: the way Cedar's documentation asks
//!   large deployments to use it. `WK_BENCH_CEDAR_FULL=n` also times `n` requests against the
//!   whole policy set.
//! - **casbin**: RBAC with domains, a domain per scope: `g, user, role, scope` for each grant
//!   (a group's grants given to each member, none for a suspended user, whose access the
//!   application would remove in casbin), `p, role, type, action, mfa` for each permission,
//!   the matcher testing the cheap fields before `g`. casbin has no resource tree, so the
//!   application asks for the resource, then each ancestor, then `*`, until one allows (the
//!   chain is computed before timing). casbin has no clock either; no grant in this workload
//!   has expired at the request instant.

use crate::workload::{ACTIONS, Ask, Holder, REQUESTS, Sizes, TYPES, Workload, ids, mask_actions, now};
use crate::{peak_rss_mib, percentile};
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, RestrictedExpression,
};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Instant;
use wardkey_authz::{Index, Request, RequestContext, ResourceRef, SubjectRef};
use wardkey_domain::Assurance;

struct Owned {
    user: String,
    ty: &'static str,
    resource: String,
    action: &'static str,
    mfa: bool,
}

fn owned(a: &Ask, w: &Workload) -> Owned {
    Owned {
        user: ids::user(a.user).to_string(),
        ty: TYPES[w.resources[a.resource].ty],
        resource: ids::resource(a.resource).to_string(),
        action: ACTIONS[a.action],
        mfa: a.mfa,
    }
}

fn summary(name: &str, mut ns: Vec<f64>) -> (f64, f64) {
    ns.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99) = (percentile(ns.clone(), 0.5), percentile(ns.clone(), 0.99));
    println!("  {name:<34} p50 {:>10.2} µs   p99 {:>10.2} µs   ({} decisions)", p50 / 1e3, p99 / 1e3, ns.len());
    (p50, p99)
}

/// Times `decide` on every request, `rounds` times over, one sample per decision.
fn time_each(rounds: usize, n: usize, decide: impl Fn(usize) -> bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(rounds * n);
    for _ in 0..rounds {
        for i in 0..n {
            let t = Instant::now();
            let allow = decide(i);
            out.push(t.elapsed().as_nanos() as f64);
            std::hint::black_box(allow);
        }
    }
    out
}

/// Like [`time_each`], but each decision starts with cold caches: `scratch` (larger than the
/// last-level cache) is written through first, as the HTTP stack and the kernel do between
/// two decisions of a real server. Only the decision is timed.
fn time_each_cold(n: usize, scratch: &mut [u8], decide: impl Fn(usize) -> bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        for line in scratch.chunks_mut(64) {
            if let Some(b) = line.first_mut() {
                *b = b.wrapping_add(1);
            }
        }
        std::hint::black_box(&scratch);
        let t = Instant::now();
        let allow = decide(i);
        out.push(t.elapsed().as_nanos() as f64);
        std::hint::black_box(allow);
    }
    out
}

fn uid(ty: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(EntityTypeName::from_str(ty).expect("type name"), EntityId::new(id))
}

/// One grant as Cedar policies (one per permission of its role).
fn cedar_permits(w: &Workload, g: usize, out: &mut String) {
    let grant = &w.grants[g];
    let role = &w.roles[grant.role];
    let principal = match grant.holder {
        Holder::User(u) => format!("principal == User::\"{}\"", ids::user(u)),
        Holder::Group(k) => format!("principal in Group::\"{}\"", ids::group(k)),
    };
    for (p, &(ty, mask)) in role.perms.iter().enumerate() {
        let actions: Vec<String> = mask_actions(mask).iter().map(|a| format!("Action::\"{a}\"")).collect();
        let resource = match grant.scope {
            None => format!("resource is {}", TYPES[ty]),
            Some(s) => format!("resource is {} in {}::\"{}\"", TYPES[ty], TYPES[w.resources[s].ty], ids::resource(s)),
        };
        let mut when = Vec::new();
        if grant.expires {
            when.push(format!("context.now < {}", crate::workload::expiry().timestamp()));
        }
        if role.mfa {
            when.push("context.mfa".to_owned());
        }
        let when = if when.is_empty() { String::new() } else { format!(" when {{ {} }}", when.join(" && ")) };
        let _ = writeln!(
            out,
            "@id(\"g{g}p{p}\")\npermit ({principal}, action in [{}], {resource}){when};",
            actions.join(", ")
        );
    }
}

fn wk_request(a: &Owned, mfa: RequestContext, password: RequestContext) -> Request<'_> {
    Request {
        subject: SubjectRef::user(&a.user),
        action: a.action,
        resource: ResourceRef::new(a.ty, &a.resource),
        context: if a.mfa { mfa } else { password },
    }
}

const CEDAR_FORBID: &str =
    "@id(\"inactive\")\nforbid (principal, action, resource) unless { principal.status == \"active\" };\n";

pub async fn bench_decisions() {
    let sizes = Sizes::from_env();
    let rounds: usize = std::env::var("WK_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    println!(
        "== in-process decisions: {} users, {} groups, {} roles, {} resources (4 levels), {} grants; {REQUESTS} rotating requests ==",
        sizes.users, sizes.groups, sizes.roles, sizes.resources, sizes.grants
    );
    let started = Instant::now();
    let w = Workload::generate(&sizes);
    let asks: Vec<Owned> = w.asks.iter().map(|a| owned(a, &w)).collect();
    println!("  workload generated in {:.1}s", started.elapsed().as_secs_f64());

    // Wardkey.
    let rss0 = peak_rss_mib();
    let started = Instant::now();
    let index = Index::build(w.records());
    println!(
        "  Wardkey index built in {:.2}s (peak RSS {:.0} MiB, {:.0} before)",
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
        rss0
    );
    let ctx_mfa = RequestContext::at(now()).with_assurance(Assurance::Mfa);
    let ctx_pwd = RequestContext::at(now()).with_assurance(Assurance::Password);
    let expected: Vec<bool> = asks.iter().map(|a| index.evaluate(&wk_request(a, ctx_mfa, ctx_pwd)).allow).collect();
    let allows = expected.iter().filter(|a| **a).count();
    println!("  {allows} of {REQUESTS} requests allow");
    assert!(
        allows > REQUESTS / 5 && allows < REQUESTS * 4 / 5,
        "the workload should mix allows and denies ({allows} allow)"
    );

    if std::env::var("WK_BENCH_ONLY_WARDKEY").is_ok_and(|v| v == "1") {
        // For profiling the index alone.
        summary(
            "Wardkey evaluate (with reasons)",
            time_each(rounds, REQUESTS, |i| index.evaluate(&wk_request(&asks[i], ctx_mfa, ctx_pwd)).allow),
        );
        summary(
            "Wardkey check (allow/deny only)",
            time_each(rounds, REQUESTS, |i| index.check(&wk_request(&asks[i], ctx_mfa, ctx_pwd))),
        );
        return;
    }

    // Cedar: entities once; a policy slice per principal asked about.
    let started = Instant::now();
    let mut entities = Vec::with_capacity(w.users.len() + w.groups + w.resources.len());
    for (i, u) in w.users.iter().enumerate() {
        let attrs = HashMap::from([(
            "status".to_owned(),
            RestrictedExpression::new_string(if u.active { "active" } else { "suspended" }.into()),
        )]);
        let parents = HashSet::from([uid("Group", &ids::group(u.group).to_string())]);
        entities.push(Entity::new(uid("User", &ids::user(i).to_string()), attrs, parents).expect("user entity"));
    }
    for k in 0..w.groups {
        entities.push(Entity::new_no_attrs(uid("Group", &ids::group(k).to_string()), HashSet::new()));
    }
    for (i, r) in w.resources.iter().enumerate() {
        let parents: HashSet<EntityUid> =
            r.parent.iter().map(|&p| uid(TYPES[w.resources[p].ty], &ids::resource(p).to_string())).collect();
        entities.push(Entity::new_no_attrs(uid(TYPES[r.ty], &ids::resource(i).to_string()), parents));
    }
    let entities = Entities::from_entities(entities, None).expect("entities");
    let mut held: Vec<Vec<usize>> = vec![Vec::new(); w.users.len()];
    let mut group_held: Vec<Vec<usize>> = vec![Vec::new(); w.groups];
    for (g, grant) in w.grants.iter().enumerate() {
        match grant.holder {
            Holder::User(u) => held[u].push(g),
            Holder::Group(k) => group_held[k].push(g),
        }
    }
    let mut slices: HashMap<usize, PolicySet> = HashMap::new();
    let mut slice_sizes = Vec::new();
    for a in &w.asks {
        slices.entry(a.user).or_insert_with(|| {
            let mut text = String::from(CEDAR_FORBID);
            for &g in held[a.user].iter().chain(&group_held[w.users[a.user].group]) {
                cedar_permits(&w, g, &mut text);
            }
            let set = PolicySet::from_str(&text).expect("cedar policies");
            slice_sizes.push(set.policies().count());
            set
        });
    }
    let cedar_requests: Vec<cedar_policy::Request> = w
        .asks
        .iter()
        .map(|a| {
            let ctx = Context::from_pairs([
                ("now".to_owned(), RestrictedExpression::new_long(now().timestamp())),
                ("mfa".to_owned(), RestrictedExpression::new_bool(a.mfa)),
            ])
            .expect("context");
            cedar_policy::Request::new(
                uid("User", &ids::user(a.user).to_string()),
                uid("Action", ACTIONS[a.action]),
                uid(TYPES[w.resources[a.resource].ty], &ids::resource(a.resource).to_string()),
                ctx,
                None,
            )
            .expect("cedar request")
        })
        .collect();
    let authorizer = Authorizer::new();
    slice_sizes.sort_unstable();
    println!(
        "  Cedar entities and {} policy slices ready in {:.1}s (median slice {} policies)",
        slices.len(),
        started.elapsed().as_secs_f64(),
        slice_sizes.get(slice_sizes.len() / 2).copied().unwrap_or(0)
    );
    let cedar_decide = |i: usize| {
        authorizer.is_authorized(&cedar_requests[i], &slices[&w.asks[i].user], &entities).decision()
            == cedar_policy::Decision::Allow
    };
    for (i, &want) in expected.iter().enumerate() {
        assert_eq!(cedar_decide(i), want, "Cedar and Wardkey disagree on request {i}");
    }

    // casbin.
    let started = Instant::now();
    let model = DefaultModel::from_str(
        "[request_definition]\nr = sub, dom, obj, act, mfa\n\
         [policy_definition]\np = sub, obj, act, mfa\n\
         [role_definition]\ng = _, _, _\n\
         [policy_effect]\ne = some(where (p.eft == allow))\n\
         [matchers]\nm = r.obj == p.obj && r.act == p.act && (p.mfa == \"any\" || r.mfa == \"yes\") && g(r.sub, p.sub, r.dom)\n",
    )
    .await
    .expect("casbin model");
    let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await.expect("casbin enforcer");
    let mut p_rows = Vec::new();
    for (i, role) in w.roles.iter().enumerate() {
        for &(ty, mask) in &role.perms {
            for a in mask_actions(mask) {
                p_rows.push(vec![
                    format!("role{i}"),
                    TYPES[ty].to_owned(),
                    a,
                    if role.mfa { "mfa" } else { "any" }.to_owned(),
                ]);
            }
        }
    }
    let members = w.members();
    let mut g_rows = Vec::new();
    for grant in &w.grants {
        let dom = grant.scope.map(|r| ids::resource(r).to_string()).unwrap_or_else(|| "*".into());
        let holders: Vec<usize> = match grant.holder {
            Holder::User(u) => vec![u],
            Holder::Group(k) => members[k].clone(),
        };
        for u in holders.into_iter().filter(|u| w.users[*u].active) {
            g_rows.push(vec![ids::user(u).to_string(), format!("role{}", grant.role), dom.clone()]);
        }
    }
    let (np, ng) = (p_rows.len(), g_rows.len());
    enforcer.add_policies(p_rows).await.expect("casbin p");
    enforcer.add_grouping_policies(g_rows).await.expect("casbin g");
    let chains: Vec<Vec<String>> = w
        .asks
        .iter()
        .map(|a| {
            w.chain(a.resource).into_iter().map(|r| ids::resource(r).to_string()).chain(["*".to_owned()]).collect()
        })
        .collect();
    println!("  casbin loaded {np} p rows and {ng} g rows in {:.1}s", started.elapsed().as_secs_f64());
    let casbin_decide = |i: usize| {
        let a = &asks[i];
        let mfa = if a.mfa { "yes" } else { "no" };
        chains[i]
            .iter()
            .any(|dom| enforcer.enforce((a.user.as_str(), dom.as_str(), a.ty, a.action, mfa)).expect("casbin enforce"))
    };
    for (i, &want) in expected.iter().enumerate() {
        assert_eq!(casbin_decide(i), want, "casbin and Wardkey disagree on request {i}");
    }
    println!("  all three engines agree on all {REQUESTS} requests");

    // Timing in interleaved blocks (Wardkey, then Cedar, ten times over), so that both see the
    // same machine: on these shared VMs the speed of the whole machine moves by 1.5x from one
    // minute to the next.
    const BLOCKS: usize = 10;
    let (mut eval_ns, mut check_ns, mut cedar_ns) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..BLOCKS {
        eval_ns.extend(time_each(rounds.div_ceil(BLOCKS), REQUESTS, |i| {
            index.evaluate(&wk_request(&asks[i], ctx_mfa, ctx_pwd)).allow
        }));
        check_ns.extend(time_each(rounds.div_ceil(BLOCKS), REQUESTS, |i| {
            index.check(&wk_request(&asks[i], ctx_mfa, ctx_pwd))
        }));
        cedar_ns.extend(time_each(1, REQUESTS, cedar_decide));
    }
    let wk_eval = summary("Wardkey evaluate (with reasons)", eval_ns);
    let wk_check = summary("Wardkey check (allow/deny only)", check_ns);
    let cedar = summary("Cedar is_authorized (sliced)", cedar_ns);
    let casbin_rounds: usize = std::env::var("WK_BENCH_CASBIN_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let casbin = summary("casbin enforce (ancestor walk)", time_each(casbin_rounds, REQUESTS, casbin_decide));
    println!(
        "  ratios (peer / Wardkey evaluate): Cedar p50 {:.1}x p99 {:.1}x; casbin p50 {:.0}x p99 {:.0}x   (goal: >= 10x Cedar -> {})",
        cedar.0 / wk_eval.0,
        cedar.1 / wk_eval.1,
        casbin.0 / wk_eval.0,
        casbin.1 / wk_eval.1,
        if cedar.0 / wk_eval.0 >= 10.0 { "MET" } else { "NOT MET" }
    );
    println!("  (Wardkey check is {:.1}x faster than evaluate at p50)", wk_eval.0 / wk_check.0);

    // The same decisions with cold caches (a 64 MiB buffer written through before each one):
    // what a decision costs inside a busy server, where the HTTP stack evicts the index
    // between requests. Also the measure for index-layout work, steadier than HTTP runs.
    let mut scratch = vec![0u8; 64 << 20];
    let cold_eval = summary(
        "Wardkey evaluate, cold caches",
        time_each_cold(REQUESTS, &mut scratch, |i| index.evaluate(&wk_request(&asks[i], ctx_mfa, ctx_pwd)).allow),
    );
    let cold_cedar = summary("Cedar is_authorized, cold caches", time_each_cold(REQUESTS, &mut scratch, cedar_decide));
    println!(
        "  cold caches: Cedar / Wardkey evaluate p50 {:.1}x p99 {:.1}x",
        cold_cedar.0 / cold_eval.0,
        cold_cedar.1 / cold_eval.1
    );

    if let Some(n) = std::env::var("WK_BENCH_CEDAR_FULL").ok().and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0)
    {
        let started = Instant::now();
        let mut text = String::from(CEDAR_FORBID);
        for g in 0..w.grants.len() {
            cedar_permits(&w, g, &mut text);
        }
        let all = PolicySet::from_str(&text).expect("cedar policies");
        println!(
            "  Cedar whole policy set: {} policies parsed in {:.1}s",
            all.policies().count(),
            started.elapsed().as_secs_f64()
        );
        let n = n.min(REQUESTS);
        let full = summary(
            "Cedar is_authorized (all policies)",
            time_each(1, n, |i| {
                let allow = authorizer.is_authorized(&cedar_requests[i], &all, &entities).decision()
                    == cedar_policy::Decision::Allow;
                assert_eq!(allow, expected[i]);
                allow
            }),
        );
        println!("  ratio (Cedar, all policies / Wardkey evaluate): p50 {:.0}x", full.0 / wk_eval.0);
    }
}
