#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Normalisation, PATCH application and projection, without a server.

use serde_json::{Value, json};
use wardkey_scim::patch::{apply, parse_patch};
use wardkey_scim::resource::{normalize, parse_attr_list, project, user_fields, user_index};
use wardkey_scim::schema::{ENTERPRISE_SCHEMA, ResourceKind, USER_SCHEMA};

fn user(v: Value) -> Value {
    normalize(ResourceKind::User, &v).unwrap()
}

fn patched(start: Value, ops: Value) -> Result<Value, wardkey_scim::resource::ScimError> {
    let mut r = user(start);
    let ops = parse_patch(&json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops }))?;
    apply(ResourceKind::User, &mut r, &ops)?;
    normalize(ResourceKind::User, &r)
}

#[test]
fn names_are_normalised_values_kept_password_dropped() {
    let r = user(json!({
        "SCHEMAS": [USER_SCHEMA], "USERNAME": "Bob", "Name": { "GIVENNAME": "Bob" }, "password": "secret",
        "active": "False", "unknownThing": 1, "id": "client-chosen", "meta": { "version": "x" },
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user": { "Department": "ICU" },
    }));
    assert_eq!(r["userName"], "Bob");
    assert_eq!(r["name"]["givenName"], "Bob");
    assert_eq!(r["active"], false);
    assert_eq!(r[ENTERPRISE_SCHEMA]["department"], "ICU");
    for gone in ["password", "unknownThing", "id", "meta"] {
        assert!(r.get(gone).is_none(), "{gone}: {r}");
    }
    assert_eq!(r["schemas"], json!([USER_SCHEMA, ENTERPRISE_SCHEMA]));
    let f = user_fields(&r).unwrap();
    assert_eq!(f.active, Some(false));
    assert_eq!(f.department.as_deref(), Some("ICU"));
    assert_eq!(user_index(&r).keys.iter().find(|(c, _)| *c == "department_key").unwrap().1.as_deref(), Some("icu"));
}

#[test]
fn bad_resources_are_refused_with_scim_types() {
    let err = |v: Value| normalize(ResourceKind::User, &v).unwrap_err().scim_type.unwrap();
    assert_eq!(err(json!({ "userName": "x" })), "invalidSyntax");
    assert_eq!(err(json!([])), "invalidSyntax");
    assert_eq!(err(json!({ "schemas": ["urn:other"], "userName": "x" })), "invalidValue");
    assert_eq!(err(json!({ "schemas": [USER_SCHEMA], "active": "maybe" })), "invalidValue");
    assert_eq!(err(json!({ "schemas": [USER_SCHEMA], "title": "x".repeat(1025) })), "invalidValue");
    assert_eq!(err(json!({ "schemas": [USER_SCHEMA], "title": "a\u{0}b" })), "invalidValue");
}

#[test]
fn entra_and_okta_patches() {
    let start = json!({ "schemas": [USER_SCHEMA], "userName": "u", "active": true, "emails": [{ "value": "a@x", "type": "work" }] });
    // Path-less replace whose keys are paths (Entra), capitalised op names.
    let r = patched(
        start.clone(),
        json!([{ "op": "Replace", "value": { "name.givenName": "G", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "D", "active": "False" } }]),
    )
    .unwrap();
    assert_eq!(r["name"]["givenName"], "G");
    assert_eq!(r[ENTERPRISE_SCHEMA]["department"], "D");
    assert_eq!(r["active"], false);
    // Okta's path-less replace.
    assert_eq!(
        patched(start.clone(), json!([{ "op": "replace", "value": { "active": false } }])).unwrap()["active"],
        false
    );
    // A value path with no match creates the value when the filter is an equality.
    let r = patched(start.clone(), json!([{ "op": "Add", "path": "emails[type eq \"home\"].value", "value": "h@x" }]))
        .unwrap();
    assert_eq!(r["emails"], json!([{ "value": "a@x", "type": "work" }, { "value": "h@x", "type": "home" }]));
    let r =
        patched(start.clone(), json!([{ "op": "replace", "path": "emails[type eq \"work\"].value", "value": "b@x" }]))
            .unwrap();
    assert_eq!(r["emails"], json!([{ "value": "b@x", "type": "work" }]));
    let r = patched(start.clone(), json!([{ "op": "remove", "path": "emails[type eq \"work\"]" }])).unwrap();
    assert!(r.get("emails").is_none());
    // Errors.
    let t = |ops: Value| patched(start.clone(), ops).unwrap_err().scim_type.unwrap();
    assert_eq!(t(json!([{ "op": "remove", "path": "id" }])), "mutability");
    assert_eq!(t(json!([{ "op": "remove" }])), "noTarget");
    assert_eq!(t(json!([{ "op": "add", "path": "nope", "value": 1 }])), "invalidPath");
    assert_eq!(
        t(json!([{ "op": "add", "path": "emails[type eq \"x\" or type eq \"y\"].display", "value": "d" }])),
        "noTarget"
    );
}

#[test]
fn group_members_removed_by_value_array() {
    let mut g = normalize(
        ResourceKind::Group,
        &json!({ "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "G", "members": [{ "value": "a" }, { "value": "b" }] }),
    )
    .unwrap();
    let ops = parse_patch(&json!({ "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        { "op": "Remove", "path": "members", "value": [{ "value": "a" }] },
        { "op": "add", "path": "members", "value": [{ "value": "c" }, { "value": "b" }] },
    ] }))
    .unwrap();
    apply(ResourceKind::Group, &mut g, &ops).unwrap();
    assert_eq!(wardkey_scim::resource::group_members(&g), vec!["b", "c"]);
}

#[test]
fn projection() {
    let r = user(
        json!({ "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA], "userName": "u", "name": { "givenName": "G", "familyName": "F" }, "title": "T", ENTERPRISE_SCHEMA: { "department": "D", "division": "V" } }),
    );
    let attrs = parse_attr_list(
        ResourceKind::User,
        "name.givenName, urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
    )
    .unwrap();
    let p = project(ResourceKind::User, r.clone(), &attrs, &[]);
    assert_eq!(p["name"], json!({ "givenName": "G" }));
    assert_eq!(p[ENTERPRISE_SCHEMA], json!({ "department": "D" }));
    assert!(p.get("title").is_none() && p.get("userName").is_none());
    let ex = parse_attr_list(ResourceKind::User, "title,name.familyName").unwrap();
    let p = project(ResourceKind::User, r, &[], &ex);
    assert!(p.get("title").is_none());
    assert_eq!(p["name"], json!({ "givenName": "G" }));
    assert!(parse_attr_list(ResourceKind::User, "nosuch").is_err());
}

#[test]
fn whole_extension_by_its_urn() {
    let start = json!({ "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA], "userName": "a", "active": true,
        ENTERPRISE_SCHEMA: { "department": "ICU", "costCenter": "C1" } });
    let added =
        patched(start.clone(), json!([{ "op": "add", "path": ENTERPRISE_SCHEMA, "value": { "division": "East" } }]))
            .unwrap();
    assert_eq!(added[ENTERPRISE_SCHEMA], json!({ "department": "ICU", "costCenter": "C1", "division": "East" }));
    let replaced = patched(
        start.clone(),
        json!([{ "op": "replace", "path": ENTERPRISE_SCHEMA.to_lowercase(), "value": { "department": null, "costCenter": "C2", "manager": { "value": "m1" } } }]),
    )
    .unwrap();
    assert_eq!(replaced[ENTERPRISE_SCHEMA], json!({ "costCenter": "C2", "manager": { "value": "m1" } }));
    let removed = patched(start.clone(), json!([{ "op": "remove", "path": ENTERPRISE_SCHEMA }])).unwrap();
    assert!(removed.get(ENTERPRISE_SCHEMA).is_none(), "{removed}");
    assert_eq!(removed["schemas"], json!([USER_SCHEMA]));
    for (value, scim_type) in [(json!("ICU"), "invalidValue"), (json!({ "userName": "b" }), "invalidPath")] {
        let e =
            patched(start.clone(), json!([{ "op": "add", "path": ENTERPRISE_SCHEMA, "value": value }])).unwrap_err();
        assert_eq!(e.scim_type, Some(scim_type), "{e}");
    }
    // Attribute paths under the URN are unchanged.
    let one = patched(start, json!([{ "op": "remove", "path": format!("{ENTERPRISE_SCHEMA}:department") }])).unwrap();
    assert_eq!(one[ENTERPRISE_SCHEMA], json!({ "costCenter": "C1" }));
}

#[test]
fn active_and_user_name_cannot_be_unassigned() {
    let start = json!({ "schemas": [USER_SCHEMA], "userName": "a", "active": true });
    for ops in [
        json!([{ "op": "remove", "path": "active" }]),
        json!([{ "op": "replace", "path": "active", "value": null }]),
        json!([{ "op": "replace", "value": { "active": null } }]),
        json!([{ "op": "remove", "path": "userName" }]),
        json!([{ "op": "replace", "path": "userName", "value": "" }]),
    ] {
        let e = patched(start.clone(), ops.clone()).unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"), "{ops}: {e}");
    }
    assert_eq!(
        patched(start, json!([{ "op": "replace", "path": "active", "value": false }])).unwrap()["active"],
        false
    );
}
