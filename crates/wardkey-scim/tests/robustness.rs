#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Limits, time, stack and panics: hostile input gets a clean error, quickly; accepted input
//! parses in linear time; random input never panics; printed filters parse back equal.

use std::time::{Duration, Instant};
use wardkey_scim::*;

/// A 2 MiB stack, what Rust gives spawned threads (and tokio its workers) by default: the
/// deep-input tests run on one, so a recursion that only fits the main thread's 8 MiB fails.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap()
}

fn unlimited_len() -> Limits {
    Limits::DEFAULT.with_max_len(usize::MAX)
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

// ---- limits -----------------------------------------------------------------------------

#[test]
fn ten_thousand_nested_parentheses_are_refused_quickly() {
    on_small_stack(|| {
        let input = format!("{}x eq 1{}", "(".repeat(10_000), ")".repeat(10_000));
        // Under the default limits the length alone refuses it.
        let (r, t) = timed(|| parse_filter(&input));
        let e = r.unwrap_err();
        assert!(matches!(e.reason(), Reason::TooLong { .. }), "{e}");
        assert_eq!(e.offset(), MAX_INPUT_LEN);
        assert!(t < Duration::from_secs(2), "{t:?}");
        // With the length unlimited, the depth counter refuses it at the 65th level.
        let (r, t) = timed(|| parse_filter_with(&input, unlimited_len()));
        let e = r.unwrap_err();
        assert_eq!(e.reason(), &Reason::TooDeep { max: MAX_DEPTH });
        assert_eq!(e.offset(), MAX_DEPTH);
        assert_eq!(e.scim_type(), "invalidFilter");
        assert!(t < Duration::from_secs(2), "{t:?}");
    });
}

#[test]
fn a_hundred_thousand_nots_are_refused_quickly() {
    on_small_stack(|| {
        let input = format!("{}x eq 1{}", "not (".repeat(100_000), ")".repeat(100_000));
        let (r, t) = timed(|| parse_filter(&input));
        assert!(matches!(r.unwrap_err().reason(), Reason::TooLong { .. }));
        assert!(t < Duration::from_secs(2), "{t:?}");
        let (r, t) = timed(|| parse_filter_with(&input, unlimited_len()));
        let e = r.unwrap_err();
        assert_eq!(e.reason(), &Reason::TooDeep { max: MAX_DEPTH });
        assert_eq!(e.offset(), MAX_DEPTH * 5);
        assert!(t < Duration::from_secs(2), "{t:?}");
        // Unterminated, and without the closing parentheses: same answer.
        let input = "not (".repeat(100_000);
        let e = parse_filter_with(&input, unlimited_len()).unwrap_err();
        assert_eq!(e.reason(), &Reason::TooDeep { max: MAX_DEPTH });
    });
}

#[test]
fn deep_value_paths_and_patch_paths_count_too() {
    // Each `[` is a level: 63 parentheses around a value path reach exactly 64.
    let at = |levels: usize| format!("{}a[b pr]{}", "(".repeat(levels), ")".repeat(levels));
    assert!(parse_filter(&at(MAX_DEPTH - 1)).is_ok());
    let e = parse_filter(&at(MAX_DEPTH)).unwrap_err();
    assert_eq!(e.reason(), &Reason::TooDeep { max: MAX_DEPTH });
    assert_eq!(e.offset(), MAX_DEPTH + 1);

    let path = |levels: usize| format!("a[{}b pr{}]", "(".repeat(levels), ")".repeat(levels));
    assert!(parse_patch_path(&path(MAX_DEPTH - 1)).is_ok());
    let e = parse_patch_path(&path(MAX_DEPTH)).unwrap_err();
    assert_eq!(e.reason(), &Reason::TooDeep { max: MAX_DEPTH });
    assert_eq!(e.scim_type(), "invalidFilter");
}

#[test]
fn depth_limit_is_exact() {
    let nested = |levels: usize| format!("{}x eq 1{}", "(".repeat(levels), ")".repeat(levels));
    assert!(parse_filter(&nested(MAX_DEPTH)).is_ok());
    assert!(parse_filter(&nested(MAX_DEPTH + 1)).is_err());
    let nots = |levels: usize| format!("{}x pr{}", "not (".repeat(levels), ")".repeat(levels));
    let deepest = parse_filter(&nots(MAX_DEPTH)).unwrap();
    assert_eq!(parse_filter(&deepest.to_string()).unwrap(), deepest);
    assert!(parse_filter(&nots(MAX_DEPTH + 1)).is_err());

    let limits = Limits::DEFAULT.with_max_depth(3);
    assert!(parse_filter_with(&nested(3), limits).is_ok());
    assert!(parse_filter_with(&nested(4), limits).is_err());
    assert!(parse_filter_with("x pr", Limits::DEFAULT.with_max_depth(0)).is_ok());
    assert!(parse_filter_with("(x pr)", Limits::DEFAULT.with_max_depth(0)).is_err());
}

#[test]
fn term_limit_is_exact() {
    let chain = |terms: usize| vec!["a eq 1"; terms].join(" or ");
    let limits = unlimited_len();
    assert!(parse_filter_with(&chain(MAX_TERMS), limits).is_ok());
    let e = parse_filter_with(&chain(MAX_TERMS + 1), limits).unwrap_err();
    assert_eq!(e.reason(), &Reason::TooManyTerms { max: MAX_TERMS });
    assert_eq!(e.offset(), MAX_TERMS * "a eq 1 or ".len());

    // Terms inside value paths and Entra's trailing comparison count.
    let limits = Limits::DEFAULT.with_max_terms(3);
    assert!(parse_filter_with(r#"a[b pr and c pr].d eq 1"#, limits).is_ok());
    assert!(parse_filter_with(r#"a[b pr and c pr].d eq 1 or e pr"#, limits).is_err());
    assert!(parse_filter_with(r#"a[b pr and c pr and d pr and e pr]"#, limits).is_err());
}

#[test]
fn length_limit_is_exact() {
    let input = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_LEN - 7));
    assert_eq!(input.len(), MAX_INPUT_LEN);
    assert!(parse_filter(&input).is_ok());
    let input = format!("a eq \"{}\"", "x".repeat(MAX_INPUT_LEN - 6));
    let e = parse_filter(&input).unwrap_err();
    assert_eq!(e.reason(), &Reason::TooLong { len: MAX_INPUT_LEN + 1, max: MAX_INPUT_LEN });
    assert!(e.to_string().contains("at most 8192"), "{e}");
}

#[test]
fn limits_are_capped() {
    let limits = Limits::DEFAULT.with_max_depth(usize::MAX).with_max_terms(usize::MAX);
    assert_eq!(limits.max_depth(), HARD_MAX_DEPTH);
    assert_eq!(limits.max_terms(), HARD_MAX_TERMS);
    assert_eq!(Limits::default(), Limits::DEFAULT);
    assert_eq!(Limits::DEFAULT.max_len(), MAX_INPUT_LEN);
}

/// The hard caps are safe: the deepest accepted nesting parses, and the longest accepted chain
/// can be parsed, printed, debug-formatted, cloned, compared and dropped on a 2 MiB stack.
#[test]
fn the_hard_caps_fit_a_small_stack() {
    on_small_stack(|| {
        let limits = Limits::DEFAULT.with_max_len(usize::MAX).with_max_depth(usize::MAX).with_max_terms(usize::MAX);
        let d = HARD_MAX_DEPTH;
        let nested = format!("{}a[b pr]{}", "not (".repeat(d - 1), ")".repeat(d - 1));
        let f = parse_filter_with(&nested, limits).unwrap();
        assert_eq!(parse_filter_with(&f.to_string(), limits).unwrap(), f);
        let too_deep = format!("{}x pr{}", "(".repeat(d + 1), ")".repeat(d + 1));
        assert!(parse_filter_with(&too_deep, limits).is_err());

        for keyword in [" or ", " and "] {
            let chain = vec!["a eq 1"; HARD_MAX_TERMS].join(keyword);
            let f = parse_filter_with(&chain, limits).unwrap();
            assert_eq!(f.to_string(), chain);
            assert!(format!("{f:?}").len() > chain.len());
            let copy = f.clone();
            assert_eq!(copy, f);
            drop(copy);
            // A tree built on the right, which printing cannot flatten.
            let mut right = Filter::Present { path: AttrPath::new("a") };
            for _ in 1..HARD_MAX_TERMS {
                right = Filter::and(Filter::Present { path: AttrPath::new("b") }, right);
            }
            drop(right);
        }
    });
}

// ---- time -------------------------------------------------------------------------------

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    (0..runs).map(|_| timed(&mut f).1).min().unwrap()
}

#[test]
fn parse_time_is_linear() {
    let limits = Limits::DEFAULT.with_max_len(usize::MAX).with_max_terms(usize::MAX);
    let chain = |terms: usize| vec!["a eq 1"; terms].join(" or ");
    // 4,000 terms: about 10 ms unoptimised; the bound only catches a hang or a blow-up on a busy CI machine.
    let t = best_of(3, || parse_filter_with(&chain(4_000), limits).unwrap());
    assert!(t < Duration::from_secs(2), "{t:?}");
    // Eight times the input takes about eight times as long; a quadratic parser would take
    // 64 times. The wide margin absorbs noise from tests running alongside.
    let (small, large) = (chain(1_000), chain(8_000));
    let t_small = best_of(7, || parse_filter_with(&small, limits).unwrap());
    let t_large = best_of(7, || parse_filter_with(&large, limits).unwrap());
    eprintln!("1,000 terms: {t_small:?}; 8,000 terms: {t_large:?}");
    assert!(t_large < t_small * 24 + Duration::from_millis(5), "{t_small:?} → {t_large:?}");

    // Mixed precedence and value paths, at the default 8 KiB length limit.
    let mut mixed = String::new();
    while mixed.len() < MAX_INPUT_LEN - 120 {
        mixed.push_str(r#"(a eq "x" and not (b pr)) or emails[type eq "w" and value co "@"] or "#);
    }
    mixed.push_str("z pr");
    let t = best_of(3, || parse_filter(&mixed).unwrap());
    assert!(t < Duration::from_secs(2), "{t:?}");

    // Inputs that make backtracking parsers explode: many unclosed groups and near-misses.
    let near_miss = format!("{}a eq 1 or", "(a eq 1 or ".repeat(60));
    let t = best_of(3, || parse_filter(&near_miss).unwrap_err());
    assert!(t < Duration::from_millis(500), "{t:?}");
    let long_string = format!("a eq \"{}", "\\\"".repeat(4_000));
    let t = best_of(3, || parse_filter(&long_string).unwrap_err());
    assert!(t < Duration::from_millis(500), "{t:?}");
}

// ---- no panics, round trips ------------------------------------------------------------

/// Knuth's MMIX linear congruential generator: deterministic, dependency-free.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Runs both parsers. Neither may panic; errors must point inside the input; every accepted
/// input must print to something that parses back equal.
fn exercise(input: &str) -> (bool, bool) {
    let filter = parse_filter(input);
    match &filter {
        Ok(f) => {
            let printed = f.to_string();
            let again = parse_filter(&printed).unwrap_or_else(|e| panic!("{input:?} printed as {printed:?}: {e}"));
            assert_eq!(&again, f, "{input:?} printed as {printed:?}");
        }
        Err(e) => {
            assert!(e.offset() <= input.len().max(MAX_INPUT_LEN), "{input:?}: {e}");
            assert_eq!(e.scim_type(), "invalidFilter");
            assert!(!e.to_string().is_empty());
        }
    }
    let path = parse_patch_path(input);
    match &path {
        Ok(p) => assert_eq!(parse_patch_path(&p.to_string()).as_ref(), Ok(p), "{input:?}"),
        Err(e) => assert!(e.offset() <= input.len().max(MAX_INPUT_LEN), "{input:?}: {e}"),
    }
    (filter.is_ok(), path.is_ok())
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Lcg(0x5c1a_f117);
    // Bytes biased towards the ones the grammar cares about, plus anything at all.
    let interesting = b"()[]\"\\ .:-_$%aeEnoqrtu019\t\n";
    for _ in 0..20_000 {
        let len = rng.below(48);
        let bytes: Vec<u8> =
            (0..len).map(|_| if rng.below(3) == 0 { rng.next() as u8 } else { *rng.pick(interesting) }).collect();
        exercise(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn random_token_soup_never_panics_and_round_trips() {
    let tokens = [
        "(",
        ")",
        "[",
        "]",
        " ",
        " ",
        " ",
        ".",
        "not",
        "NOT",
        "and",
        "And",
        "or",
        "OR",
        "pr",
        "eq",
        "Eq",
        "ne",
        "co",
        "sw",
        "ew",
        "gt",
        "lt",
        "ge",
        "le",
        "xx",
        "emails",
        "type",
        "value",
        "userName",
        "name.familyName",
        "members.$ref",
        "$ref",
        "urn:ietf:params:scim:schemas:core:2.0:User:",
        "urn:ietf:params:scim:schemas:core:2.0:User:userName",
        "urn:x:",
        "urn:",
        ":",
        "\"work\"",
        "\"a\\\"b\"",
        "\"\\u00e9\"",
        "\"\\ud83d\\ude00\"",
        "\"\\ud800\"",
        "\"",
        "\\",
        "1",
        "-2.5e3",
        "01",
        "1e999",
        "true",
        "FALSE",
        "null",
        ".value",
        "é",
        "\u{0}",
        "\n",
    ];
    let mut rng = Lcg(0xfeed_beef);
    let (mut filters_ok, mut paths_ok) = (0, 0);
    for _ in 0..30_000 {
        let len = 1 + rng.below(14);
        let input: String = (0..len).map(|_| *rng.pick(&tokens)).collect();
        let (f, p) = exercise(&input);
        filters_ok += usize::from(f);
        paths_ok += usize::from(p);
    }
    // The soup must reach the success paths too, or the round trips above test nothing.
    assert!(filters_ok > 0 && paths_ok > 100, "{filters_ok} filters, {paths_ok} paths parsed");
}

/// Near-misses: canonical forms of random trees with a few bytes deleted, duplicated or
/// replaced by grammar characters, so most inputs get deep into the parser before failing.
#[test]
fn mutated_filters_never_panic() {
    let mut rng = Lcg(0xabad_cafe);
    let inserts = ["(", ")", "[", "]", "\"", "\\", " ", ".", ":", "not (", " and ", " or ", "pr", "eq 1"];
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..5_000 {
        let mut text = random_filter(&mut rng, 4, false).to_string().into_bytes();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(text.len() + 1);
            match rng.below(4) {
                0 => {
                    let end = (at + 1 + rng.below(4)).min(text.len());
                    text.drain(at.min(end)..end);
                }
                1 => {
                    let end = (at + rng.below(8)).min(text.len());
                    let copy = text[at.min(end)..end].to_vec();
                    text.splice(at..at, copy);
                }
                _ => {
                    text.splice(at..at, rng.pick(&inserts).bytes());
                }
            }
        }
        let (f, _) = exercise(&String::from_utf8_lossy(&text));
        if f { ok += 1 } else { failed += 1 }
    }
    assert!(ok > 100 && failed > 1_000, "{ok} parsed, {failed} refused");
}

/// Builds a random filter the parser could have produced: valid names, no value path inside
/// a value path, any shape of and/or/not.
fn random_filter(rng: &mut Lcg, depth: usize, in_value_path: bool) -> Filter {
    let attrs = ["userName", "emails", "Name", "x-y_z", "$ref", "A1"];
    let subs = [None, Some("value"), Some("familyName"), Some("$ref")];
    let schemas = [None, Some("urn:ietf:params:scim:schemas:core:2.0:User"), Some("URN:x-y:a%20b/c")];
    let values = || -> Vec<CompValue> {
        vec![
            CompValue::String("work".into()),
            CompValue::String("quote\" back\\slash \u{1} é 😀 ) ] and or".into()),
            CompValue::String(String::new()),
            CompValue::Number(Number::parse("-1.5E+3").unwrap()),
            CompValue::Number(Number::from(42)),
            CompValue::Bool(true),
            CompValue::Bool(false),
            CompValue::Null,
        ]
    };
    let path = |rng: &mut Lcg, allow_sub: bool| AttrPath {
        schema: rng.pick(&schemas).map(Name::new),
        attr: Name::new(*rng.pick(&attrs)),
        sub_attr: if allow_sub { rng.pick(&subs).map(Name::new) } else { None },
    };
    let leaf = rng.below(if depth == 0 { 3 } else { 8 });
    match leaf {
        0 => Filter::Present { path: path(rng, true) },
        1 | 2 => Filter::Compare {
            path: path(rng, true),
            op: *rng.pick(&CompareOp::ALL),
            value: rng.pick(&values()).clone(),
        },
        3 => Filter::negate(random_filter(rng, depth - 1, in_value_path)),
        4 | 5 => {
            Filter::and(random_filter(rng, depth - 1, in_value_path), random_filter(rng, depth - 1, in_value_path))
        }
        6 => Filter::or(random_filter(rng, depth - 1, in_value_path), random_filter(rng, depth - 1, in_value_path)),
        _ if in_value_path => Filter::Present { path: path(rng, true) },
        _ => Filter::ValuePath {
            path: path(rng, false),
            filter: Box::new(random_filter(rng, depth - 1, true)),
            sub_attr: match rng.below(3) {
                0 => None,
                1 => Some(SubAttrCondition { sub_attr: Name::new("value"), condition: Condition::Present }),
                _ => Some(SubAttrCondition {
                    sub_attr: Name::new("type"),
                    condition: Condition::Compare { op: CompareOp::Ne, value: values()[0].clone() },
                }),
            },
        },
    }
}

#[test]
fn random_trees_print_and_parse_back_equal() {
    let mut rng = Lcg(7);
    for _ in 0..5_000 {
        let tree = random_filter(&mut rng, 6, false);
        let printed = tree.to_string();
        let parsed = parse_filter_with(&printed, unlimited_len())
            .unwrap_or_else(|e| panic!("{tree:?} printed as {printed:?}: {e}"));
        assert_eq!(parsed, tree, "printed as {printed:?}");
        // Printing is canonical: a second round changes nothing.
        assert_eq!(parsed.to_string(), printed);
    }
}

#[test]
fn string_values_agree_with_serde_json() {
    let mut rng = Lcg(99);
    let pieces = [
        "a",
        "é",
        "😀",
        "\\\"",
        "\\\\",
        "\\/",
        "\\n",
        "\\t",
        "\\u0041",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\udc00x",
        "\\x",
        "\\u12",
        "\u{1}",
        " ",
        "'",
    ];
    for _ in 0..5_000 {
        let body: String = (0..rng.below(8)).map(|_| *rng.pick(&pieces)).collect();
        let literal = format!("\"{body}\"");
        let theirs = serde_json::from_str::<String>(&literal).ok();
        let ours = match parse_filter(&format!("a eq {literal}")) {
            Ok(Filter::Compare { value: CompValue::String(s), .. }) => Some(s),
            Ok(other) => panic!("{other:?}"),
            Err(_) => None,
        };
        assert_eq!(ours, theirs, "{literal}");
    }
}
