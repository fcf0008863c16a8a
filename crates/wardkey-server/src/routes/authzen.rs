//! OpenID AuthZEN Authorization API 1.0: evaluation, batch evaluations, the three searches
//! and the metadata document. A deny is `200 {"decision": false}`; only malformed requests
//! are errors (400). Unknown fields are ignored, as the specification asks. PEPs authenticate
//! with an API token of scope `pdp`.
//!
//! Wardkey's extensions ride in `context`: in requests `ip` (the end user's address), `amr`
//! (RFC 8176 methods the user authenticated with) or `assurance`, `device_trust`, and
//! `min_revision` (also the `X-Wardkey-Min-Revision` header); in responses `revision`,
//! `reasons`, `obligations`, `break_glass` and `acr_values`. A batch answer is
//! `{"decision": b}` per item, with that `context` only when `options.include_reasons` asks for
//! it (or the item carries an obligation or `acr_values` the PEP must act on).
//!
//! Search results name subjects and resources with the `type` and `id` a PEP sends to
//! `/evaluation` (a person's username, a resource's name within its type, the UUID only when
//! the name is ambiguous; `*` for "any resource of the type"), so evaluating a result gives the
//! answer the search promised. `options.include_properties: true` adds each result's
//! `properties` (Wardkey's id, the name, the grants that allow).

use crate::AppState;
use crate::extract::{ApiJson, Auth};
use crate::problem::Problem;
use crate::respond::ApiResult;
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::borrow::Cow;
use wardkey_domain::{Assurance, DeviceTrust};
use wardkey_service::Pdp;
use wardkey_service::decisions::{AccessContext, AccessDecision, AccessRequest, SearchPaging};

/// Largest batch of evaluations in one request.
pub const MAX_EVALUATIONS: usize = 1000;
const MAX_ID: usize = 1024;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Subject {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Action {
    pub name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub id: Option<String>,
    #[serde(default)]
    pub properties: Option<wardkey_authz::Properties>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Evaluation {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<Context>,
}

/// The `context` members Wardkey reads; every other member is skipped by the parser without
/// being kept (AuthZEN: unknown fields are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Context {
    pub ip: Option<String>,
    pub source_ip: Option<String>,
    pub amr: Option<Vec<String>>,
    pub assurance: Option<String>,
    pub device_trust: Option<String>,
    pub min_revision: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Options {
    pub evaluations_semantic: Option<String>,
    /// Wardkey: include reasons in each batch answer.
    #[serde(default)]
    pub include_reasons: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Evaluations {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<Context>,
    #[serde(default)]
    pub evaluations: Option<Vec<Evaluation>>,
    #[serde(default)]
    pub options: Option<Options>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct PageReq {
    pub token: Option<String>,
    pub limit: Option<usize>,
}

/// Options of a search request (AuthZEN's `options` member, as in batch evaluations).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SearchOptions {
    /// Wardkey: give each result `properties` (Wardkey's id, the name, the grants that allow).
    /// Off by default: an AuthZEN result is the `type` and `id` (or `name`) a PEP evaluates.
    #[serde(default)]
    pub include_properties: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Search {
    pub subject: Option<Subject>,
    pub action: Option<Action>,
    pub resource: Option<Resource>,
    pub context: Option<Context>,
    pub page: Option<PageReq>,
    pub options: Option<SearchOptions>,
}

impl Search {
    fn include_properties(&self) -> bool {
        self.options.as_ref().is_some_and(|o| o.include_properties)
    }
}

/// One search result: what identifies it, and `properties` only when asked for.
fn result(mut identity: serde_json::Map<String, Value>, properties: Option<Value>) -> Value {
    if let Some(p) = properties {
        identity.insert("properties".to_owned(), p);
    }
    Value::Object(identity)
}

fn entity(kind: &str, id: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("type".to_owned(), Value::String(kind.to_owned()));
    m.insert("id".to_owned(), Value::String(id.to_owned()));
    m
}

fn bad(field: &str, message: &str) -> Problem {
    Problem::malformed(format!("{field}: {message}")).with("field", field.to_owned())
}

fn text<'a>(v: &'a Option<String>, field: &str) -> Result<&'a str, Problem> {
    match v.as_deref() {
        Some(s) if !s.is_empty() && s.len() <= MAX_ID => Ok(s),
        Some(s) if s.len() > MAX_ID => Err(bad(field, "too long")),
        _ => Err(bad(field, "required")),
    }
}

fn opt_text<'a>(v: &'a Option<String>, field: &str) -> Result<Option<&'a str>, Problem> {
    match v.as_deref() {
        None => Ok(None),
        Some(s) if s.len() > MAX_ID => Err(bad(field, "too long")),
        Some(s) => Ok(Some(s)),
    }
}

/// Reads Wardkey's context fields.
fn access_context(ctx: Option<&Context>) -> Result<(AccessContext, Option<u64>), Problem> {
    let mut out = AccessContext::default();
    let Some(ctx) = ctx else { return Ok((out, None)) };
    if let Some(ip) = ctx.ip.as_deref().or(ctx.source_ip.as_deref()) {
        out.source_ip = Some(ip.parse().map_err(|_| bad("context.ip", "not an IP address"))?);
    }
    if let Some(amr) = &ctx.amr {
        if amr.len() > 32 {
            return Err(bad("context.amr", "at most 32 values"));
        }
        out.assurance = Some(Assurance::from_amr(amr.iter().map(String::as_str)));
    }
    if let Some(a) = ctx.assurance.as_deref() {
        out.assurance = Some(match a {
            "password" => Assurance::Password,
            "mfa" => Assurance::Mfa,
            "phishing_resistant" => Assurance::PhishingResistant,
            _ => return Err(bad("context.assurance", "password, mfa or phishing_resistant")),
        });
    }
    if let Some(d) = ctx.device_trust.as_deref() {
        out.device_trust = Some(
            DeviceTrust::parse(d)
                .ok_or_else(|| bad("context.device_trust", "unknown, registered, managed or compliant"))?,
        );
    }
    Ok((out, ctx.min_revision))
}

/// The PDP's body parser: straight `serde_json` on the hot path; only a body that fails is
/// parsed again by the general extractor's parser, for an error that names the field.
pub struct PdpJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for PdpJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = crate::extract::json_body_bytes(req, state).await?;
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => Ok(PdpJson(v)),
            Err(_) => crate::extract::parse_json::<T>(&bytes).map(PdpJson),
        }
    }
}

/// A body that must be JSON (415 otherwise) within the body limit (413), unparsed.
pub struct JsonBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        crate::extract::json_body_bytes(req, state).await.map(JsonBody)
    }
}

/// `X-Wardkey-Min-Revision`, read in place (taking `Parts` would copy every header and
/// extension of the request).
pub struct MinRevisionHeader(Option<u64>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for MinRevisionHeader {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        min_revision_header(&parts.headers).map(MinRevisionHeader)
    }
}

pub(crate) fn min_revision_header(headers: &axum::http::HeaderMap) -> Result<Option<u64>, Problem> {
    match headers.get("x-wardkey-min-revision") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| bad("X-Wardkey-Min-Revision", "a non-negative integer")),
    }
}

fn properties(r: &Resource) -> Result<wardkey_authz::Properties, Problem> {
    let Some(p) = &r.properties else { return Ok(Default::default()) };
    if p.len() > 64 {
        return Err(bad("resource.properties", "at most 64 properties"));
    }
    Ok(p.clone())
}

/// One evaluation with the batch's defaults filled in.
fn access_request(item: &Evaluation, defaults: &Evaluation) -> Result<(AccessRequest<'static>, Option<u64>), Problem> {
    let subject = item.subject.as_ref().or(defaults.subject.as_ref()).ok_or_else(|| bad("subject", "required"))?;
    let action = item.action.as_ref().or(defaults.action.as_ref()).ok_or_else(|| bad("action", "required"))?;
    let resource = item.resource.as_ref().or(defaults.resource.as_ref()).ok_or_else(|| bad("resource", "required"))?;
    let context = item.context.as_ref().or(defaults.context.as_ref());
    let (ctx, min_rev) = access_context(context)?;
    Ok((
        AccessRequest {
            subject_type: Cow::Owned(text(&subject.kind, "subject.type")?.to_owned()),
            subject_id: Cow::Owned(text(&subject.id, "subject.id")?.to_owned()),
            action: Cow::Owned(text(&action.name, "action.name")?.to_owned()),
            resource_type: Cow::Owned(text(&resource.kind, "resource.type")?.to_owned()),
            resource_id: opt_text(&resource.id, "resource.id")?.map(|s| Cow::Owned(s.to_owned())),
            resource_properties: properties(resource)?,
            context: ctx,
        },
        min_rev,
    ))
}

fn with_revision(mut res: Response, revision: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&revision.to_string()) {
        res.headers_mut().insert(crate::respond::REVISION_HEADER, v);
    }
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn wait(s: &AppState, revision: Option<u64>) -> Result<(), Problem> {
    if let Some(r) = revision {
        s.services.wait_for_revision(r).await?;
    }
    Ok(())
}

/// A required name: present, not empty, at most [`MAX_ID`] bytes.
fn name<'a>(v: Option<Cow<'a, str>>, field: &str) -> Result<Cow<'a, str>, Problem> {
    match v {
        Some(s) if !s.is_empty() && s.len() <= MAX_ID => Ok(s),
        Some(s) if s.len() > MAX_ID => Err(bad(field, "too long")),
        _ => Err(bad(field, "required")),
    }
}

/// One evaluation as the hot path parses it: names borrow from the body unless they contain
/// JSON escapes. Every member the other forms accept is accepted here with the same meaning.
#[derive(Debug, Default, Deserialize)]
pub struct EvaluationRef<'a> {
    #[serde(borrow)]
    pub subject: Option<EntityRef<'a>>,
    #[serde(borrow)]
    pub action: Option<ActionRef<'a>>,
    #[serde(borrow)]
    pub resource: Option<ResourceRef<'a>>,
    pub context: Option<Context>,
}

#[derive(Debug, Default, Deserialize)]
pub struct EntityRef<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ActionRef<'a> {
    #[serde(borrow)]
    pub name: Option<Cow<'a, str>>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ResourceRef<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub id: Option<Cow<'a, str>>,
    #[serde(default)]
    pub properties: Option<wardkey_authz::Properties>,
}

/// One evaluation taken apart without copying (the single-decision hot path).
pub(crate) fn borrowed_request(body: EvaluationRef<'_>) -> Result<(AccessRequest<'_>, Option<u64>), Problem> {
    let subject = body.subject.ok_or_else(|| bad("subject", "required"))?;
    let action = body.action.ok_or_else(|| bad("action", "required"))?;
    let mut resource = body.resource.ok_or_else(|| bad("resource", "required"))?;
    let (ctx, min_rev) = access_context(body.context.as_ref())?;
    if resource.id.as_ref().is_some_and(|id| id.len() > MAX_ID) {
        return Err(bad("resource.id", "too long"));
    }
    let props = resource.properties.take().unwrap_or_default();
    if props.len() > 64 {
        return Err(bad("resource.properties", "at most 64 properties"));
    }
    Ok((
        AccessRequest {
            subject_type: name(subject.kind, "subject.type")?,
            subject_id: name(subject.id, "subject.id")?,
            action: name(action.name, "action.name")?,
            resource_type: name(resource.kind, "resource.type")?,
            resource_id: resource.id,
            resource_properties: props,
            context: ctx,
        },
        min_rev,
    ))
}

/// A decision serialised straight to bytes (no intermediate `Value`).
#[derive(serde::Serialize)]
struct DecisionBody<'a> {
    decision: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    context: Option<DecisionContext<'a>>,
}

#[derive(serde::Serialize)]
struct DecisionContext<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasons: Option<&'a [wardkey_authz::Reason]>,
    #[serde(skip_serializing_if = "<[Value]>::is_empty")]
    obligations: &'a [Value],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    break_glass: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr_values: Option<&'static str>,
}

/// A single decision: always with its context (revision, reasons, and what the PEP must do).
fn decision_body(d: &AccessDecision) -> DecisionBody<'_> {
    DecisionBody {
        decision: d.decision,
        context: Some(DecisionContext {
            revision: Some(d.revision),
            reasons: Some(d.reasons.as_slice()),
            obligations: &d.obligations,
            break_glass: d.break_glass,
            acr_values: d.acr_values,
        }),
    }
}

/// One answer of a batch: `{"decision": b}` as AuthZEN has it, with a `context` only when
/// reasons were asked for, or when the PEP must act on it (an obligation to honour, the
/// `acr_values` that would turn a deny into an allow), which a PEP must never miss. The
/// revision is the response's (`X-Wardkey-Revision`).
fn batch_item(d: &AccessDecision, with_reasons: bool) -> DecisionBody<'_> {
    let actionable = !d.obligations.is_empty() || d.acr_values.is_some();
    DecisionBody {
        decision: d.decision,
        context: (with_reasons || actionable).then(|| DecisionContext {
            revision: with_reasons.then_some(d.revision),
            reasons: with_reasons.then_some(d.reasons.as_slice()),
            obligations: &d.obligations,
            break_glass: d.break_glass,
            acr_values: d.acr_values,
        }),
    }
}

fn json_response<T: serde::Serialize>(body: &T, revision: u64) -> Response {
    let mut buf = Vec::with_capacity(256);
    if serde_json::to_writer(&mut buf, body).is_err() {
        return Problem::internal().into_response();
    }
    let mut res = Response::new(axum::body::Body::from(buf));
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_revision(res, revision)
}

/// `POST /access/v1/evaluation` through the router: what the hot path ([`crate::hot`]) hands
/// over when a request is not in its common form (a session cookie instead of a bearer
/// token, say). Both answer alike.
pub async fn evaluation(
    State(s): State<AppState>,
    auth: Auth<Pdp>,
    MinRevisionHeader(header_rev): MinRevisionHeader,
    JsonBody(body): JsonBody,
) -> ApiResult {
    decide(&s, &auth.authorized, header_rev, &body).await
}

/// Parses one evaluation from `body` and decides it.
pub(crate) async fn decide(
    s: &AppState,
    by: &wardkey_service::Authorized<Pdp>,
    header_rev: Option<u64>,
    body: &[u8],
) -> ApiResult {
    let parsed = match serde_json::from_slice::<EvaluationRef<'_>>(body) {
        Ok(v) => v,
        // Parsed again only to say which field is at fault (the general parser is slower).
        Err(_) => match crate::extract::parse_json::<Evaluation>(body) {
            Err(p) => return Err(p),
            Ok(_) => return Err(Problem::malformed("the body is not an AuthZEN evaluation")),
        },
    };
    let (req, ctx_rev) = borrowed_request(parsed)?;
    wait(s, header_rev.max(ctx_rev)).await?;
    let d = s.services.evaluate(by, &req).await?;
    Ok(json_response(&decision_body(&d), d.revision))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// `POST /access/v1/evaluations`: top-level fields are defaults each item may override; the
/// answers keep the order of the items.
pub async fn evaluations(
    State(s): State<AppState>,
    auth: Auth<Pdp>,
    MinRevisionHeader(header_rev): MinRevisionHeader,
    PdpJson(body): PdpJson<Evaluations>,
) -> ApiResult {
    let defaults = Evaluation {
        subject: body.subject.clone(),
        action: body.action.clone(),
        resource: body.resource.clone(),
        context: body.context.clone(),
    };
    let options = body.options.clone().unwrap_or_default();
    let semantic = match options.evaluations_semantic.as_deref() {
        None | Some("execute_all") => Semantic::ExecuteAll,
        Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
        Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
        Some(_) => {
            return Err(bad(
                "options.evaluations_semantic",
                "execute_all, deny_on_first_deny or permit_on_first_permit",
            ));
        }
    };
    let items = body.evaluations.clone().unwrap_or_default();
    if items.len() > MAX_EVALUATIONS {
        return Err(bad("evaluations", &format!("at most {MAX_EVALUATIONS} per request")));
    }
    if items.is_empty() {
        // No list: one evaluation from the top-level fields, answered in the single form.
        let (req, ctx_rev) = access_request(&defaults, &Evaluation::default())?;
        wait(&s, header_rev.max(ctx_rev)).await?;
        let d = s.services.evaluate(&auth.authorized, &req).await?;
        return Ok(json_response(&decision_body(&d), d.revision));
    }
    // Parse everything first: a malformed item fails the whole request, before any decision.
    let mut reqs = Vec::with_capacity(items.len());
    let mut min_rev = header_rev;
    for (i, item) in items.iter().enumerate() {
        let (req, r) = access_request(item, &defaults).map_err(|p| p.with("evaluation_index", i))?;
        min_rev = min_rev.max(r);
        reqs.push(req);
    }
    wait(&s, min_rev).await?;
    let mut decisions = Vec::with_capacity(reqs.len());
    let mut revision = 0;
    for req in &reqs {
        let d = s.services.evaluate(&auth.authorized, req).await?;
        revision = revision.max(d.revision);
        let stop = match semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !d.decision,
            Semantic::PermitOnFirstPermit => d.decision,
        };
        decisions.push(d);
        if stop {
            break;
        }
    }
    #[derive(serde::Serialize)]
    struct Batch<'a> {
        evaluations: Vec<DecisionBody<'a>>,
    }
    let out = Batch { evaluations: decisions.iter().map(|d| batch_item(d, options.include_reasons)).collect() };
    Ok(json_response(&out, revision))
}

fn page_req(p: &Option<PageReq>) -> (Option<String>, Option<usize>) {
    match p {
        Some(p) => (p.token.clone(), p.limit),
        None => (None, None),
    }
}

fn page_json(next: Option<String>) -> Value {
    json!({ "next_token": next.unwrap_or_default() })
}

/// `POST /access/v1/search/subject`: subjects (of `subject.type`) that may do the action on
/// the resource, each with the grants that allow it.
pub async fn search_subject(
    State(s): State<AppState>,
    _auth: Auth<Pdp>,
    MinRevisionHeader(header_rev): MinRevisionHeader,
    ApiJson(body): ApiJson<Search>,
) -> ApiResult {
    let subject = body.subject.clone().unwrap_or_default();
    // Results carry the type as the PEP named it (`identity` is AuthZEN's newer name for a
    // person, and means what `user` does).
    let asked_kind = text(&subject.kind, "subject.type")?.to_owned();
    let kind = if asked_kind == "identity" { "user" } else { asked_kind.as_str() };
    let with_properties = body.include_properties();
    let action = body.action.clone().unwrap_or_default();
    let action = text(&action.name, "action.name")?.to_owned();
    let resource = body.resource.clone().unwrap_or_default();
    let rtype = text(&resource.kind, "resource.type")?.to_owned();
    let rid = opt_text(&resource.id, "resource.id")?.map(str::to_owned);
    let props = properties(&resource)?;
    let (ctx, ctx_rev) = access_context(body.context.as_ref())?;
    wait(&s, header_rev.max(ctx_rev)).await?;
    let (token, limit) = page_req(&body.page);
    let found = s
        .services
        .search_subjects(&rtype, rid.as_deref(), &props, &action, &ctx, SearchPaging { token: token.as_deref(), limit })
        .await?;
    let results: Vec<Value> = found
        .items
        .iter()
        .filter(|a| {
            let k = match a.subject {
                wardkey_domain::Member::User(_) => "user",
                wardkey_domain::Member::ServiceAccount(_) => "service_account",
            };
            k == kind
        })
        .map(|a| {
            let wardkey_id = match a.subject {
                wardkey_domain::Member::User(u) => u.to_string(),
                wardkey_domain::Member::ServiceAccount(x) => x.to_string(),
            };
            let properties = with_properties.then(|| {
                json!({ "wardkey_id": wardkey_id, "name": a.name, "grants": a.grants, "break_glass": a.break_glass })
            });
            result(entity(&asked_kind, &a.pep_id), properties)
        })
        .collect();
    Ok(with_revision(
        Json(json!({ "results": results, "page": page_json(found.next), "context": { "revision": found.revision } }))
            .into_response(),
        found.revision,
    ))
}

/// `POST /access/v1/search/resource`: resources (of `resource.type`) the subject may act on.
pub async fn search_resource(
    State(s): State<AppState>,
    _auth: Auth<Pdp>,
    MinRevisionHeader(header_rev): MinRevisionHeader,
    ApiJson(body): ApiJson<Search>,
) -> ApiResult {
    let subject = body.subject.clone().unwrap_or_default();
    let skind = text(&subject.kind, "subject.type")?.to_owned();
    let sid = text(&subject.id, "subject.id")?.to_owned();
    let action = body.action.clone().unwrap_or_default();
    let action = opt_text(&action.name, "action.name")?.map(str::to_owned);
    let resource = body.resource.clone().unwrap_or_default();
    let rtype = text(&resource.kind, "resource.type")?.to_owned();
    let with_properties = body.include_properties();
    let (ctx, ctx_rev) = access_context(body.context.as_ref())?;
    wait(&s, header_rev.max(ctx_rev)).await?;
    let (token, limit) = page_req(&body.page);
    let found = s
        .services
        .search_resources(
            &skind,
            &sid,
            Some(&rtype),
            action.as_deref(),
            &ctx,
            SearchPaging { token: token.as_deref(), limit },
        )
        .await?;
    let results: Vec<Value> = found
        .items
        .iter()
        // The type as the PEP named it; the id it would evaluate: the resource's name (its UUID
        // when the name is ambiguous), or `*` for "any resource of the type" (a resource Wardkey
        // does not know, which only grants without a scope reach).
        .map(|r| match &r.target {
            wardkey_authz::AccessTarget::Resource { id, pep_id, name, .. } => {
                let properties = with_properties
                    .then(|| json!({ "wardkey_id": id.to_string(), "name": name, "actions": r.actions }));
                result(entity(&rtype, pep_id), properties)
            }
            wardkey_authz::AccessTarget::AllOfType { .. } => {
                let properties = with_properties.then(|| json!({ "all_of_type": true, "actions": r.actions }));
                result(entity(&rtype, "*"), properties)
            }
        })
        .collect();
    Ok(with_revision(
        Json(json!({ "results": results, "page": page_json(found.next), "context": { "revision": found.revision } }))
            .into_response(),
        found.revision,
    ))
}

/// `POST /access/v1/search/action`: the actions the subject may take on the resource.
pub async fn search_action(
    State(s): State<AppState>,
    _auth: Auth<Pdp>,
    MinRevisionHeader(header_rev): MinRevisionHeader,
    ApiJson(body): ApiJson<Search>,
) -> ApiResult {
    let subject = body.subject.clone().unwrap_or_default();
    let skind = text(&subject.kind, "subject.type")?.to_owned();
    let sid = text(&subject.id, "subject.id")?.to_owned();
    let resource = body.resource.clone().unwrap_or_default();
    let rtype = text(&resource.kind, "resource.type")?.to_owned();
    let rid = opt_text(&resource.id, "resource.id")?.map(str::to_owned);
    let props = properties(&resource)?;
    let with_properties = body.include_properties();
    let (ctx, ctx_rev) = access_context(body.context.as_ref())?;
    wait(&s, header_rev.max(ctx_rev)).await?;
    let found = s.services.search_actions(&skind, &sid, &rtype, rid.as_deref(), &props, &ctx).await?;
    let results: Vec<Value> = found
        .items
        .iter()
        .map(|a| {
            let mut m = serde_json::Map::new();
            m.insert("name".to_owned(), Value::String(a.action.clone()));
            result(m, with_properties.then(|| json!({ "grants": a.grants, "break_glass": a.break_glass })))
        })
        .collect();
    Ok(with_revision(
        Json(json!({ "results": results, "page": page_json(None), "context": { "revision": found.revision } }))
            .into_response(),
        found.revision,
    ))
}

/// `GET /.well-known/authzen-configuration`: where the endpoints are.
pub async fn configuration(State(s): State<AppState>) -> Response {
    let base = s.services.public_origin().to_owned();
    Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    }))
    .into_response()
}

/// `?resource_type=&resource=&action=` for "who has access".
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WhoQuery {
    /// Resource type name.
    pub resource_type: String,
    /// Resource id or name (omit for "any resource of the type").
    pub resource: Option<String>,
    pub action: String,
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::search_limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// Who may do `action` on the resource, now, with the grant path of each (access reviews,
/// evidence). Served from the decision index.
#[utoipa::path(get, path = "/api/v1/access/subjects", tag = "access", params(WhoQuery),
    responses((status = 200, description = "Subjects and their grant paths", body = Object),
        (status = "4XX", description = "Problem", body = crate::problem::ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn who_has_access(
    State(s): State<AppState>,
    auth: Auth<wardkey_service::AuditRead>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<WhoQuery>,
) -> ApiResult {
    let props = wardkey_authz::Properties::new();
    let ctx = AccessContext { assurance: Some(Assurance::PhishingResistant), ..Default::default() };
    let found = s
        .services
        .who_has_access(
            &auth.authorized,
            &q.resource_type,
            q.resource.as_deref(),
            &props,
            &q.action,
            &ctx,
            SearchPaging { token: q.after.as_deref(), limit: q.limit },
        )
        .await?;
    Ok(with_revision(
        Json(json!({ "items": found.items, "next_cursor": found.next, "revision": found.revision })).into_response(),
        found.revision,
    ))
}

/// `?subject=&subject_type=&resource_type=&action=` for "what can they reach".
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReachQuery {
    /// User id or username (or service account id with `subject_type=service_account`).
    pub subject: String,
    pub subject_type: Option<String>,
    pub resource_type: Option<String>,
    pub action: Option<String>,
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100); outside that range is refused.
    #[serde(default, deserialize_with = "crate::extract::search_limit")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// What the subject may reach, now, with the actions and grant paths (access reviews).
#[utoipa::path(get, path = "/api/v1/access/resources", tag = "access", params(ReachQuery),
    responses((status = 200, description = "Resources (or whole types) and actions with grant paths", body = Object),
        (status = "4XX", description = "Problem", body = crate::problem::ProblemDoc, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn what_can_they_reach(
    State(s): State<AppState>,
    auth: Auth<wardkey_service::AuditRead>,
    crate::extract::ApiQuery(q): crate::extract::ApiQuery<ReachQuery>,
) -> ApiResult {
    let ctx = AccessContext { assurance: Some(Assurance::PhishingResistant), ..Default::default() };
    let kind = q.subject_type.as_deref().unwrap_or("user");
    let found = s
        .services
        .what_can_they_reach(
            &auth.authorized,
            kind,
            &q.subject,
            q.resource_type.as_deref(),
            q.action.as_deref(),
            &ctx,
            SearchPaging { token: q.after.as_deref(), limit: q.limit },
        )
        .await?;
    Ok(with_revision(
        Json(json!({ "items": found.items, "next_cursor": found.next, "revision": found.revision })).into_response(),
        found.revision,
    ))
}
