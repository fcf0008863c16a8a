#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PATCH paths (RFC 7644 §3.5.2): the RFC's examples, the ones Entra ID and Okta send, and
//! malformed paths with the `scimType` each must get.

use wardkey_scim::*;

fn parse(input: &str) -> PatchPath {
    let path = parse_patch_path(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"));
    // Printing gives back the same path.
    assert_eq!(parse_patch_path(&path.to_string()).unwrap(), path, "{input:?}");
    path
}

fn fail(input: &str, scim_type: &str, offset: usize) -> ScimFilterError {
    let e = match parse_patch_path(input) {
        Ok(p) => panic!("{input:?} should not parse, got {p:?}"),
        Err(e) => e,
    };
    assert_eq!(e.scim_type(), scim_type, "{input:?}: {e}");
    assert_eq!(e.offset(), offset, "{input:?}: {e}");
    e
}

fn attr(input: &str) -> AttrPath {
    match parse(input) {
        PatchPath::Attr(path) => path,
        other => panic!("{input:?}: {other:?}"),
    }
}

fn eq(attr: &str, value: &str) -> Filter {
    Filter::Compare { path: AttrPath::new(attr), op: CompareOp::Eq, value: CompValue::String(value.to_owned()) }
}

#[test]
fn attribute_paths() {
    let p = attr("name.givenName");
    assert_eq!(p.schema, None);
    assert_eq!(p.attr.as_str(), "name");
    assert_eq!(p.sub_attr.as_ref().map(Name::as_str), Some("givenName"));

    let p = attr("members");
    assert_eq!((p.attr.as_str(), p.sub_attr.is_none()), ("members", true));

    let p = attr("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value");
    assert_eq!(p.schema.as_ref().map(Name::as_str), Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"));
    assert_eq!(p.attr.as_str(), "manager");
    assert_eq!(p.sub_attr.as_ref().map(Name::as_str), Some("value"));

    // What Entra ID sends for extension attributes.
    let p = attr("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber");
    assert_eq!(p.attr.as_str(), "employeeNumber");
    let p = attr("urn:ietf:params:scim:schemas:core:2.0:User:name.familyName");
    assert_eq!(p.key(), "urn:ietf:params:scim:schemas:core:2.0:user:name.familyname");

    // Entra ID and Okta send plain attribute names in every case.
    for name in ["active", "displayName", "userName", "externalId", "title", "ACTIVE"] {
        assert_eq!(attr(name).attr.as_str(), name);
    }
}

#[test]
fn value_paths() {
    assert_eq!(
        parse(r#"members[value eq "2819c223"]"#),
        PatchPath::ValuePath {
            path: AttrPath::new("members"),
            filter: Box::new(eq("value", "2819c223")),
            sub_attr: None
        }
    );
    assert_eq!(
        parse(r#"emails[type eq "work"].value"#),
        PatchPath::ValuePath {
            path: AttrPath::new("emails"),
            filter: Box::new(eq("type", "work")),
            sub_attr: Some(Name::new("value")),
        }
    );
    // RFC 7644 §3.5.2.2's examples.
    assert_eq!(
        parse(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).to_string(),
        r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#
    );
    let p = parse(r#"emails[type eq "work" and value ew "example.com"]"#);
    assert!(matches!(&p, PatchPath::ValuePath { filter, sub_attr: None, .. } if matches!(**filter, Filter::And(..))));
    // Entra ID: addresses of a type, one field.
    let p = parse(r#"addresses[type eq "work"].streetAddress"#);
    assert!(matches!(&p, PatchPath::ValuePath { sub_attr: Some(s), .. } if s.as_str() == "streetAddress"));
    // Case-insensitive keywords inside the brackets.
    let p = parse(r#"members[Value EQ "x"]"#);
    assert_eq!(p.to_string(), r#"members[Value eq "x"]"#);
    // Surrounding whitespace is tolerated.
    assert_eq!(parse("  name.givenName "), PatchPath::Attr(attr("name.givenName")));
}

#[test]
fn malformed_paths_are_invalid_path() {
    let e = fail("", "invalidPath", 0);
    assert_eq!(e.reason(), &Reason::Empty);
    fail("   ", "invalidPath", 0);
    fail("a.b.c", "invalidPath", 3);
    fail("name.", "invalidPath", 5);
    fail("1name", "invalidPath", 0);
    fail("urn:ietf:userName", "invalidPath", 8);
    fail("foo:bar", "invalidPath", 0);
    fail("urn:ietf:params:scim:schemas:core:2.0:User:", "invalidPath", 43);
    fail("name givenName", "invalidPath", 5);
    fail("emails]", "invalidPath", 6);
    fail("(emails)", "invalidPath", 0);
    fail(r#""emails""#, "invalidPath", 0);
    fail("name.x[y pr]", "invalidPath", 6);
    // After the brackets: only `.subAttr`, directly.
    fail(r#"emails[type eq "work"].value.x"#, "invalidPath", 28);
    fail(r#"emails[type eq "work"]."#, "invalidPath", 23);
    fail(r#"emails[type eq "work"] .value"#, "invalidPath", 23);
    fail(r#"emails[type eq "work"].value eq "x""#, "invalidPath", 29);
    fail(r#"emails[type eq "work"]x"#, "invalidPath", 22);
    fail(&"a".repeat(MAX_INPUT_LEN + 1), "invalidPath", MAX_INPUT_LEN);
}

#[test]
fn malformed_bracket_filters_are_invalid_filter() {
    // RFC 7644 §3.12 lists "PATCH (Path Filter)" under invalidFilter.
    let e = fail(r#"members[value eq ]"#, "invalidFilter", 17);
    assert!(e.to_string().starts_with("invalid filter at byte 17: expected a value"), "{e}");
    fail(r#"members[value xx "a"]"#, "invalidFilter", 14);
    fail(r#"members[value eq "a""#, "invalidFilter", 20);
    fail(r#"members[value eq "a"#, "invalidFilter", 17);
    fail(r#"members[]"#, "invalidFilter", 8);
    fail(r#"members[x[y eq 1]]"#, "invalidFilter", 9);
    fail(r#"members[value pr "x"]"#, "invalidFilter", 17);
}

#[test]
fn from_str() {
    let p: PatchPath = "name.givenName".parse().unwrap();
    assert!(matches!(p, PatchPath::Attr(_)));
}
