#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Filters: every example of RFC 7644 §3.4.2.2, the forms Microsoft Entra ID and Okta send,
//! precedence, values, and one test per kind of malformed input with the error it must give.

use wardkey_scim::*;

// ---- builders ---------------------------------------------------------------------------

fn parse(input: &str) -> Filter {
    parse_filter(input).unwrap_or_else(|e| panic!("{input:?} should parse: {e}"))
}

fn fail(input: &str) -> ScimFilterError {
    match parse_filter(input) {
        Ok(f) => panic!("{input:?} should not parse, got {f:?}"),
        Err(e) => {
            assert_eq!(e.scim_type(), "invalidFilter", "{input:?}: {e}");
            assert!(e.offset() <= input.len(), "{input:?}: offset beyond input: {e}");
            assert!(e.to_string().contains(&format!("at byte {}", e.offset())), "{e}");
            e
        }
    }
}

fn path(text: &str) -> AttrPath {
    let (schema, rest) = match text.rfind(':') {
        Some(i) => (Some(Name::new(&text[..i])), &text[i + 1..]),
        None => (None, text),
    };
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(Name::new(s))),
        None => (rest, None),
    };
    AttrPath { schema, attr: Name::new(attr), sub_attr: sub }
}

fn cmp(p: &str, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare { path: path(p), op, value }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.to_owned())
}

fn n(text: &str) -> CompValue {
    CompValue::Number(Number::parse(text).unwrap())
}

fn pr(p: &str) -> Filter {
    Filter::Present { path: path(p) }
}

fn vp(p: &str, filter: Filter) -> Filter {
    Filter::ValuePath { path: path(p), filter: Box::new(filter), sub_attr: None }
}

use CompareOp::*;

/// Parses, checks the tree, and checks that the canonical form parses back to the same tree.
fn check(input: &str, expected: Filter) {
    let got = parse(input);
    assert_eq!(got, expected, "{input:?}");
    let printed = got.to_string();
    assert_eq!(parse(&printed), got, "{input:?} printed as {printed:?}");
}

// ---- RFC 7644 §3.4.2.2 ------------------------------------------------------------------

#[test]
fn rfc7644_examples() {
    check(r#"userName eq "bjensen""#, cmp("userName", Eq, s("bjensen")));
    check(r#"name.familyName co "O'Malley""#, cmp("name.familyName", Co, s("O'Malley")));
    check(r#"userName sw "J""#, cmp("userName", Sw, s("J")));
    check(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        cmp("urn:ietf:params:scim:schemas:core:2.0:User:userName", Sw, s("J")),
    );
    check("title pr", pr("title"));
    for (op, o) in [("gt", Gt), ("ge", Ge), ("lt", Lt), ("le", Le)] {
        check(
            &format!(r#"meta.lastModified {op} "2011-05-13T04:42:34Z""#),
            cmp("meta.lastModified", o, s("2011-05-13T04:42:34Z")),
        );
    }
    check(r#"title pr and userType eq "Employee""#, Filter::and(pr("title"), cmp("userType", Eq, s("Employee"))));
    check(r#"title pr or userType eq "Intern""#, Filter::or(pr("title"), cmp("userType", Eq, s("Intern"))));
    check(
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        cmp("schemas", Eq, s("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")),
    );
    check(
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        Filter::and(
            cmp("userType", Eq, s("Employee")),
            Filter::or(cmp("emails", Co, s("example.com")), cmp("emails.value", Co, s("example.org"))),
        ),
    );
    check(
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        Filter::and(
            cmp("userType", Ne, s("Employee")),
            Filter::negate(Filter::or(cmp("emails", Co, s("example.com")), cmp("emails.value", Co, s("example.org")))),
        ),
    );
    check(
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        Filter::and(cmp("userType", Eq, s("Employee")), cmp("emails.type", Eq, s("work"))),
    );
    check(
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        Filter::and(
            cmp("userType", Eq, s("Employee")),
            vp("emails", Filter::and(cmp("type", Eq, s("work")), cmp("value", Co, s("@example.com")))),
        ),
    );
    check(
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        Filter::or(
            vp("emails", Filter::and(cmp("type", Eq, s("work")), cmp("value", Co, s("@example.com")))),
            vp("ims", Filter::and(cmp("type", Eq, s("xmpp")), cmp("value", Co, s("@foo.com")))),
        ),
    );
}

#[test]
fn urn_qualified_paths_split_at_the_last_colon() {
    let f = parse(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#);
    let Filter::Compare { path, .. } = &f else { panic!("{f:?}") };
    assert_eq!(
        path.schema.as_ref().map(Name::as_str),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(path.attr.as_str(), "employeeNumber");
    assert_eq!(path.sub_attr, None);

    let f = parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value pr");
    let Filter::Present { path } = &f else { panic!("{f:?}") };
    assert_eq!(path.attr.as_str(), "manager");
    assert_eq!(path.sub_attr.as_ref().map(Name::as_str), Some("value"));
    assert_eq!(path.key(), "urn:ietf:params:scim:schemas:extension:enterprise:2.0:user:manager.value");

    // A URN-qualified value path.
    check(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:emails[type eq "work"]"#,
        vp("urn:ietf:params:scim:schemas:core:2.0:User:emails", cmp("type", Eq, s("work"))),
    );
}

// ---- identity providers -----------------------------------------------------------------

#[test]
fn microsoft_entra_id_forms() {
    check(r#"userName eq "x""#, cmp("userName", Eq, s("x")));
    check(r#"externalId eq "x""#, cmp("externalId", Eq, s("x")));
    check(r#"displayName eq "Group""#, cmp("displayName", Eq, s("Group")));
    check(
        r#"userName eq "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081""#,
        cmp("userName", Eq, s("Test_User_dfeef4c5-5681-4387-b016-bdf221e82081")),
    );
    // The value path followed by a sub-attribute comparison.
    check(
        r#"emails[type eq "work"].value eq "x""#,
        Filter::ValuePath {
            path: path("emails"),
            filter: Box::new(cmp("type", Eq, s("work"))),
            sub_attr: Some(SubAttrCondition {
                sub_attr: Name::new("value"),
                condition: Condition::Compare { op: Eq, value: s("x") },
            }),
        },
    );
    check(
        r#"emails[type eq "work"].value pr and active eq true"#,
        Filter::and(
            Filter::ValuePath {
                path: path("emails"),
                filter: Box::new(cmp("type", Eq, s("work"))),
                sub_attr: Some(SubAttrCondition { sub_attr: Name::new("value"), condition: Condition::Present }),
            },
            cmp("active", Eq, CompValue::Bool(true)),
        ),
    );
    // Keywords and operators in other cases; the original spelling of names is kept.
    let f = parse(r#"userName EQ "x" And externalId Eq "y" OR DisplayName eQ "z""#);
    assert_eq!(
        f,
        Filter::or(
            Filter::and(cmp("userName", Eq, s("x")), cmp("externalId", Eq, s("y"))),
            cmp("DisplayName", Eq, s("z")),
        )
    );
    assert_eq!(f.to_string(), r#"userName eq "x" and externalId eq "y" or DisplayName eq "z""#);
    check(
        r#"NOT (members PR) AND active Eq TRUE"#,
        Filter::and(Filter::negate(pr("members")), cmp("active", Eq, CompValue::Bool(true))),
    );
}

#[test]
fn okta_forms() {
    check(r#"userName eq "x""#, cmp("userName", Eq, s("x")));
    check(r#"displayName eq "x""#, cmp("displayName", Eq, s("x")));
    check(r#"userName eq "isaac.brock@example.com""#, cmp("userName", Eq, s("isaac.brock@example.com")));
}

#[test]
fn names_are_case_insensitive_through_the_key() {
    let a = parse(r#"UserName eq "x""#);
    let b = parse(r#"username eq "x""#);
    assert_ne!(a, b, "equality is exact: the spelling is kept");
    let (Filter::Compare { path: pa, .. }, Filter::Compare { path: pb, .. }) = (&a, &b) else { panic!() };
    assert_eq!(pa.attr.as_str(), "UserName");
    assert_eq!(pa.attr.key(), "username");
    assert_eq!(pa.key(), pb.key());
    assert!(pa.attr.eq_ignore_case("USERNAME"));
}

// ---- precedence and grouping ------------------------------------------------------------

#[test]
fn and_binds_tighter_than_or() {
    check(
        "a eq 1 or b eq 2 and c eq 3",
        Filter::or(cmp("a", Eq, n("1")), Filter::and(cmp("b", Eq, n("2")), cmp("c", Eq, n("3")))),
    );
    check(
        "a eq 1 and b eq 2 or c eq 3",
        Filter::or(Filter::and(cmp("a", Eq, n("1")), cmp("b", Eq, n("2"))), cmp("c", Eq, n("3"))),
    );
    check(
        "(a eq 1 or b eq 2) and c eq 3",
        Filter::and(Filter::or(cmp("a", Eq, n("1")), cmp("b", Eq, n("2"))), cmp("c", Eq, n("3"))),
    );
}

#[test]
fn chains_nest_to_the_left_and_print_without_needless_parentheses() {
    let f = parse("a pr or b pr or c pr");
    assert_eq!(f, Filter::or(Filter::or(pr("a"), pr("b")), pr("c")));
    assert_eq!(f.to_string(), "a pr or b pr or c pr");
    // A chain nested on the right keeps its parentheses, so the shape survives printing.
    let f = parse("a pr or (b pr or c pr)");
    assert_eq!(f, Filter::or(pr("a"), Filter::or(pr("b"), pr("c"))));
    assert_eq!(f.to_string(), "a pr or (b pr or c pr)");
    // Redundant parentheses disappear.
    assert_eq!(parse("((a pr)) and ((b pr))").to_string(), "a pr and b pr");
    assert_eq!(parse("(a pr and b pr) or c pr").to_string(), "a pr and b pr or c pr");
    assert_eq!(parse("not ((a pr))").to_string(), "not (a pr)");
}

#[test]
fn whitespace_is_flexible_between_tokens() {
    let expected = Filter::and(cmp("a", Eq, s("x")), pr("b"));
    for input in
        [r#"a eq "x" and b pr"#, "  a\teq \"x\"\n and   b pr  ", r#"(a eq "x")and(b pr)"#, r#"a eq"x"and b pr"#]
    {
        assert_eq!(parse(input), expected, "{input:?}");
    }
    check(r#"not(a pr)"#, Filter::negate(pr("a")));
}

// ---- values -----------------------------------------------------------------------------

#[test]
fn values() {
    check("a eq true", cmp("a", Eq, CompValue::Bool(true)));
    check("a eq FALSE", cmp("a", Eq, CompValue::Bool(false)));
    check("a eq Null", cmp("a", Eq, CompValue::Null));
    for text in ["0", "-0", "42", "-17", "3.25", "1e3", "1E+3", "-2.5e-3", "9223372036854775807"] {
        check(&format!("a gt {text}"), cmp("a", Gt, n(text)));
    }
    let number = |text: &str| match parse(&format!("a eq {text}")) {
        Filter::Compare { value: CompValue::Number(n), .. } => n,
        f => panic!("{f:?}"),
    };
    assert_eq!(number("42").as_i64(), Some(42));
    assert_eq!(number("42").as_f64(), 42.0);
    assert_eq!(number("1.50").text(), "1.50");
    assert_eq!(number("1.50").as_i64(), None);
    assert_eq!(number("1e2").as_i64(), None);
    assert_eq!(number("1e2").as_f64(), 100.0);
    // Beyond i64: the float and the exact text remain.
    let big = number("9223372036854775808");
    assert_eq!(big.as_i64(), None);
    assert_eq!(big.text(), "9223372036854775808");
}

#[test]
fn strings_are_json_strings() {
    let cases = [
        r#""plain""#,
        r#""quote \" backslash \\ slash \/""#,
        r#""\b\f\n\r\t""#,
        r#""\u00e9 \u00E9 é""#,
        r#""\ud83d\ude00 😀""#,
        r#""\u0000""#,
        r#""""#,
        r#""日本語""#,
    ];
    for literal in cases {
        let expected: String = serde_json::from_str(literal).unwrap();
        let f = parse(&format!("a eq {literal}"));
        assert_eq!(f, cmp("a", Eq, CompValue::String(expected.clone())), "{literal}");
        // The printed literal is valid JSON for the same string.
        let printed = f.to_string();
        let printed_literal = printed.strip_prefix("a eq ").unwrap();
        assert_eq!(serde_json::from_str::<String>(printed_literal).unwrap(), expected);
        assert_eq!(parse(&printed), f);
    }
}

#[test]
fn dollar_ref_is_an_attribute_name() {
    check(r#"members.$ref eq "x""#, cmp("members.$ref", Eq, s("x")));
    check(r#"members[$ref eq "x"]"#, vp("members", cmp("$ref", Eq, s("x"))));
}

// ---- malformed input --------------------------------------------------------------------

fn assert_reason(input: &str, offset: usize, pred: impl Fn(&Reason) -> bool) -> ScimFilterError {
    let e = fail(input);
    assert!(pred(e.reason()), "{input:?}: unexpected reason {:?}", e.reason());
    assert_eq!(e.offset(), offset, "{input:?}: {e}");
    e
}

#[test]
fn unbalanced_parentheses_and_brackets() {
    let e = assert_reason("(a pr", 5, |r| matches!(r, Reason::Unclosed { open: '(', opened_at: 0, .. }));
    assert_eq!(
        e.to_string(),
        "invalid filter at byte 5: expected \"and\", \"or\" or ')' closing the '(' at byte 0, \
         found the end of the input"
    );
    assert_reason("((a pr)", 7, |r| matches!(r, Reason::Unclosed { open: '(', opened_at: 0, .. }));
    assert_reason("a pr)", 4, |r| matches!(r, Reason::Unmatched { open: '(', close: ')' }));
    assert_reason("(a pr))", 6, |r| matches!(r, Reason::Unmatched { close: ')', .. }));
    assert_reason(r#"emails[type eq "work""#, 21, |r| matches!(r, Reason::Unclosed { open: '[', opened_at: 6, .. }));
    assert_reason(
        r#"emails[type eq "work")"#,
        21,
        |r| matches!(r, Reason::Unclosed { open: '[', found, .. } if found == "')'"),
    );
    assert_reason(r#"emails type eq "work"]"#, 7, |r| matches!(r, Reason::UnknownOperator { .. }));
    assert_reason(r#"a pr]"#, 4, |r| matches!(r, Reason::Unmatched { open: '[', close: ']' }));
    assert_reason("()", 1, |r| matches!(r, Reason::Expected { .. }));
}

#[test]
fn unknown_operator() {
    let e =
        assert_reason(r#"userName xx "a""#, 9, |r| matches!(r, Reason::UnknownOperator { found } if found == "\"xx\""));
    assert!(e.to_string().contains("expected one of eq, ne, co, sw, ew, gt, lt, ge, le or pr"));
    assert_reason(r#"userName == "a""#, 9, |r| matches!(r, Reason::UnknownOperator { .. }));
    assert_reason(r#"userName "a""#, 9, |r| matches!(r, Reason::Expected { .. }));
    assert_reason("userName", 8, |r| matches!(r, Reason::Expected { .. }));
}

#[test]
fn missing_or_malformed_value() {
    let e = assert_reason("userName eq", 11, |r| matches!(r, Reason::Expected { .. }));
    assert!(e.to_string().contains("expected a value"), "{e}");
    assert_reason("userName eq and b pr", 12, |r| matches!(r, Reason::Expected { .. }));
    assert_reason("(userName eq)", 12, |r| matches!(r, Reason::Expected { .. }));
    assert_reason("userName eq 'bjensen'", 12, |r| matches!(r, Reason::Expected { .. }));
    assert_reason("userName eq bjensen", 12, |r| matches!(r, Reason::Expected { .. }));
    for bad in ["01", "1.", ".5", "+1", "1e", "1e+", "-", "--1", "0x10", "1.2.3", "2011-05-13"] {
        assert_reason(&format!("a eq {bad}"), 5, |r| matches!(r, Reason::InvalidNumber { .. }));
    }
    assert_reason("a eq 1e999", 5, |r| matches!(r, Reason::NumberOutOfRange { .. }));
}

#[test]
fn present_takes_no_value() {
    let e = assert_reason(r#"title pr "x""#, 9, |r| matches!(r, Reason::PresentWithValue { .. }));
    assert!(e.to_string().contains("\"pr\" takes no value"), "{e}");
    assert_reason("title pr 1", 9, |r| matches!(r, Reason::PresentWithValue { .. }));
    assert_reason("title pr true", 9, |r| matches!(r, Reason::PresentWithValue { .. }));
}

#[test]
fn trailing_garbage() {
    let e = assert_reason(r#"userName eq "x" garbage"#, 16, |r| matches!(r, Reason::Expected { .. }));
    assert!(e.to_string().contains("expected \"and\", \"or\" or the end of the filter"), "{e}");
    assert_reason(r#"userName eq "x" "y""#, 16, |r| matches!(r, Reason::Expected { .. }));
    assert_reason(r#"a pr and"#, 8, |r| matches!(r, Reason::Expected { .. }));
    assert_reason(r#"a pr or or b pr"#, 8, |r| matches!(r, Reason::Expected { .. }));
    assert_reason(r#"a pr (b pr)"#, 5, |r| matches!(r, Reason::Expected { .. }));
}

#[test]
fn string_errors() {
    assert_reason(r#"userName eq "bjensen"#, 12, |r| matches!(r, Reason::UnterminatedString));
    assert_reason(r#"userName eq "bjensen\""#, 12, |r| matches!(r, Reason::UnterminatedString));
    assert_reason(r#"a eq "x\qy""#, 7, |r| matches!(r, Reason::InvalidEscape(_)));
    assert_reason(r#"a eq "\u12""#, 6, |r| matches!(r, Reason::InvalidEscape(_)));
    assert_reason(r#"a eq "\ud800""#, 6, |r| matches!(r, Reason::InvalidEscape(_)));
    assert_reason(r#"a eq "\ud800\u0041""#, 6, |r| matches!(r, Reason::InvalidEscape(_)));
    assert_reason(r#"a eq "\udc00""#, 6, |r| matches!(r, Reason::InvalidEscape(_)));
    assert_reason("a eq \"x\ny\"", 7, |r| matches!(r, Reason::ControlCharacter(0x0a)));
}

#[test]
fn bad_urns_and_names() {
    let urn = |input: &str, offset| {
        assert_reason(input, offset, |r| matches!(r, Reason::InvalidUrn { .. }));
    };
    urn(r#"urn:ietf:userName eq "x""#, 8);
    urn(r#"urn:x:y:userName eq "x""#, 4);
    urn(r#"urn:-ab:y:userName eq "x""#, 4);
    urn(r#"urn::userName eq "x""#, 4);
    urn(r#"foo:bar eq "x""#, 0);
    urn(r#"http://example.com:userName eq "x""#, 0);
    urn(r#"urn:ietf:params:scim%zz:User:userName eq "x""#, 20);
    urn(r#"urn:ietf:params:scim^:User:userName eq "x""#, 20);

    let name = |input: &str, offset| {
        assert_reason(input, offset, |r| matches!(r, Reason::InvalidAttrName { .. }));
    };
    name(r#"urn:ietf:params:scim:schemas:core:2.0:User: eq "x""#, 43);
    name(r#"urn:ietf:params:scim:schemas:core:2.0:User:1abc eq "x""#, 43);
    name(r#"1abc eq "x""#, 0);
    name(r#"a.b.c eq "x""#, 3);
    name(r#"name. eq "x""#, 5);
    name(r#".name eq "x""#, 0);
    name(r#"user$name eq "x""#, 4);
    name(r#"usér eq "x""#, 2);
    name(r#"emails[type eq "work"].1 eq "x""#, 23);
    name(r#"emails[type eq "work"]. eq "x""#, 23);
}

#[test]
fn empty_input() {
    for input in ["", " ", "\t\n "] {
        assert_reason(input, 0, |r| matches!(r, Reason::Empty));
    }
}

#[test]
fn nested_value_paths_are_refused() {
    let e = assert_reason("emails[x[y eq 1]]", 8, |r| matches!(r, Reason::NestedValuePath));
    assert!(e.to_string().contains("cannot be nested"), "{e}");
    assert_reason("emails[(x[y eq 1])]", 9, |r| matches!(r, Reason::NestedValuePath));
    assert_reason("emails[not (x[y eq 1])]", 13, |r| matches!(r, Reason::NestedValuePath));
    assert_reason("a[b pr and c[d pr]]", 12, |r| matches!(r, Reason::NestedValuePath));
    // Value paths side by side (not nested) are fine, also inside parentheses.
    check("(a[b pr]) and c[d pr]", Filter::and(vp("a", pr("b")), vp("c", pr("d"))));
}

#[test]
fn other_malformed_value_paths() {
    assert_reason("name.x[y pr]", 6, |r| matches!(r, Reason::SubAttrBeforeValuePath));
    assert_reason("emails[]", 7, |r| matches!(r, Reason::Expected { .. }));
    // The bracket must follow the name directly.
    assert_reason("emails [type pr]", 7, |r| matches!(r, Reason::Expected { .. }));
    assert_reason(r#"emails[type pr].value"#, 21, |r| matches!(r, Reason::Expected { .. }));
    assert_reason(r#"emails[type pr] eq "x""#, 16, |r| matches!(r, Reason::Expected { .. }));
}

#[test]
fn not_requires_parentheses() {
    let e = assert_reason("not a pr", 4, |r| matches!(r, Reason::Expected { .. }));
    assert!(e.to_string().contains("'(' after \"not\""), "{e}");
    assert_reason("not", 3, |r| matches!(r, Reason::Expected { .. }));
    assert_reason("a pr and not", 12, |r| matches!(r, Reason::Expected { .. }));
}

#[test]
fn long_offending_text_is_quoted_briefly() {
    let long = "x".repeat(5000);
    let e = fail(&format!("a eq 1 {long}"));
    assert!(e.to_string().len() < 200, "{e}");
    assert!(e.to_string().contains("..."), "{e}");
}

#[test]
fn from_str() {
    let f: Filter = r#"userName eq "x""#.parse().unwrap();
    assert_eq!(f, cmp("userName", Eq, s("x")));
    assert!("userName".parse::<Filter>().is_err());
}

#[test]
fn chain_operands_and_debug_flatten_the_left_spine() {
    let f = parse("a pr and b pr and c pr");
    assert_eq!(f.chain_operands(), vec![&pr("a"), &pr("b"), &pr("c")]);
    let f = parse("a pr or (b pr or c pr)");
    assert_eq!(f.chain_operands(), vec![&pr("a"), &Filter::or(pr("b"), pr("c"))]);
    assert_eq!(pr("a").chain_operands(), vec![&pr("a")]);

    let debug = format!("{:?}", parse("a pr or b pr or c pr"));
    assert!(debug.starts_with("Or(Present {"), "{debug}");
    assert_eq!(debug.matches("Or(").count(), 1, "{debug}");
    assert!(format!("{:#?}", parse("a pr or b pr")).contains("\n    Present {"));
}
