//! Test-only crate: `tests/cedar.rs` checks Wardkey's decision engine (`wardkey-authz`)
//! against the same access model encoded as Cedar policies. See the README.
