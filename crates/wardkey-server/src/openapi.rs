//! The OpenAPI document, generated from the handlers' `#[utoipa::path]` annotations.

use crate::problem::{FieldErrorDoc, ProblemDoc};
use crate::respond::Page;
use crate::routes::{access, audit, authn, authzen, directory, hr, ops, policy, tokens};
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A Wardkey API token: `Authorization: Bearer wkt_...`"))
                    .build(),
            ),
        );
    }
}

/// Every DELETE of a versioned entity needs the version the client read: `?version=N` or
/// `If-Match: "N"` (a request with neither is refused with a problem naming `version`). The
/// handlers take `version` as an optional query field because `If-Match` may stand in for
/// it, which OpenAPI cannot say about two parameters; the document states the rule a
/// generated client can always follow: `version` required, `If-Match` an equivalent way that
/// the server also accepts, which must agree with `version` when both are sent.
struct DeleteNeedsVersion;

impl Modify for DeleteNeedsVersion {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        use utoipa::openapi::{RefOr, Required};
        for item in openapi.paths.paths.values_mut() {
            let Some(op) = item.delete.as_mut() else { continue };
            let Some(params) = op.parameters.as_mut() else { continue };
            let versioned = params
                .iter()
                .any(|p| matches!(p, RefOr::T(p) if p.name == "version" && p.parameter_in == ParameterIn::Query));
            if !versioned {
                continue;
            }
            for p in params.iter_mut() {
                let RefOr::T(p) = p else { continue };
                if p.name == "version" && p.parameter_in == ParameterIn::Query {
                    p.required = Required::True;
                    p.description = Some(
                        "The version you read (the entity's `ETag`). Required; `If-Match: \"<version>\"` is \
                         accepted in its place."
                            .into(),
                    );
                    p.schema = Some(RefOr::T(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                            .minimum(Some(1))
                            .into(),
                    ));
                } else if p.name.eq_ignore_ascii_case("If-Match") && p.parameter_in == ParameterIn::Header {
                    p.description = Some(
                        "`\"<version>\"`: the version you read, in place of `?version=` (both may be sent when \
                         they agree)."
                            .into(),
                    );
                }
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Wardkey API",
        description = "Identity lifecycle and access management for organisations handling PHI. \
            Errors are RFC 9457 problem documents (`application/problem+json`) with stable `type` URIs \
            under https://wardkey.dev/problems/. Writes name the version they read (body `version`, \
            `?version=` on DELETE, or `If-Match: \"<version>\"`); responses carry `ETag: \"<version>\"` \
            and `X-Wardkey-Revision`. Every request may carry `X-Request-ID` (echoed, and recorded in audit events)."
    ),
    paths(
        directory::create_user, directory::list_users, directory::get_user, directory::update_user,
        directory::delete_user, directory::set_user_status, directory::verify_identity,
        directory::create_group, directory::list_groups, directory::get_group, directory::update_group,
        directory::delete_group, directory::list_members, directory::add_member, directory::remove_member,
        directory::create_service_account, directory::list_service_accounts, directory::get_service_account,
        directory::update_service_account, directory::delete_service_account,
        access::create_resource_type, access::list_resource_types, access::get_resource_type,
        access::update_resource_type, access::delete_resource_type,
        access::create_resource, access::list_resources, access::get_resource, access::update_resource,
        access::delete_resource,
        access::create_role, access::list_roles, access::get_role, access::update_role, access::delete_role,
        access::create_role_template, access::list_role_templates, access::get_role_template,
        access::update_role_template, access::delete_role_template,
        access::create_sod_rule, access::list_sod_rules, access::get_sod_rule, access::update_sod_rule,
        access::delete_sod_rule,
        access::create_grant, access::list_grants, access::get_grant, access::revoke_grant,
        tokens::create_token, tokens::list_tokens, tokens::revoke_token,
        audit::list_events, audit::checkpoint, audit::inclusion_proof, audit::consistency_proof,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
        authn::login, authn::totp, authn::recovery, authn::webauthn_challenge, authn::webauthn, authn::logout,
        authn::me, authn::change_password, authn::my_factors, authn::totp_begin, authn::totp_confirm,
        authn::passkey_begin, authn::passkey_finish, authn::remove_factor, authn::recovery_codes,
        authn::my_sessions, authn::end_my_session,
        authn::list_sessions, authn::revoke_session, authn::revoke_user_sessions,
        authn::set_password, authn::password_compromised, authn::unlock, authn::reset_factors, authn::authn_status,
        policy::create_forbid_rule, policy::list_forbid_rules, policy::get_forbid_rule, policy::delete_forbid_rule,
        policy::break_glass, authzen::who_has_access, authzen::what_can_they_reach,
        hr::import, hr::reconciliation,
    ),
    components(schemas(
        ProblemDoc, FieldErrorDoc,
        Page<wardkey_domain::User>,
        directory::StatusChange, directory::VerifyIdentity, directory::MembershipChange,
        tokens::CreatedToken,
        audit::CheckpointView, audit::InclusionProofView, audit::ConsistencyProofView,
        Page<wardkey_domain::Session>, Page<wardkey_domain::ForbidRule>,
    )),
    modifiers(&BearerAuth, &DeleteNeedsVersion),
    tags(
        (name = "users", description = "People: lifecycle, identity verification, HR attributes"),
        (name = "groups", description = "Groups and their members"),
        (name = "service-accounts", description = "Non-human accounts, each owned by a person"),
        (name = "access", description = "Resource types, resources, roles, role templates, SoD rules, grants"),
        (name = "tokens", description = "API tokens"),
        (name = "audit", description = "Tamper-evident audit log (scope audit:read or admin)"),
        (name = "operations", description = "Health, readiness, metrics, this document (unauthenticated)"),
        (name = "authentication", description = "Sign-in: password, then a second factor (TOTP, passkey, recovery code); step-up; sign-out. \
            The session travels in the `__Host-wardkey_session` cookie (Secure, HttpOnly, SameSite=Strict); it rotates at every completed step"),
        (name = "self-service", description = "The signed-in person: account, factors, recovery codes, password, sessions (session cookie)"),
        (name = "sessions", description = "Everyone's sessions, for admins"),
        (name = "authentication-admin", description = "Passwords, lockout, factor reset, for admins"),
        (name = "hr", description = "HR roster imports (plan, then apply) and the reconciliation report. SCIM 2.0 lives at /scim/v2 (RFC 7643/7644; its discovery documents describe it)"),
    )
)]
pub struct ApiDoc;

/// The document as JSON bytes.
pub fn document() -> Vec<u8> {
    match ApiDoc::openapi().to_json() {
        Ok(s) => s.into_bytes(),
        Err(e) => {
            tracing::error!(error = %e, "could not render the OpenAPI document");
            b"{}".to_vec()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_lists_every_route_and_schema() {
        let doc: serde_json::Value = serde_json::from_slice(&document()).expect("valid JSON");
        if let Ok(path) = std::env::var("WARDKEY_DUMP_OPENAPI") {
            std::fs::write(path, serde_json::to_string_pretty(&doc).expect("pretty")).expect("dump");
        }
        let paths = doc["paths"].as_object().expect("paths");
        assert_eq!(paths.len(), 64, "{:?}", paths.keys().collect::<Vec<_>>());
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
        // Every `$ref` resolves.
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = part.split('"').next().unwrap_or_default();
            assert!(schemas.contains_key(name), "dangling $ref to {name}");
        }
    }
}
