#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Passkey ceremonies end to end against `webauthn-authenticator-rs`'s `SoftPasskey`, a
//! software authenticator and client nobody on this project wrote. Everything between the
//! server and the "browser" goes through JSON text, as it would over HTTP.

use serde_json::Value;
use url::Url;
use uuid::Uuid;
use wardkey_authn::webauthn::{
    MAX_CLIENT_RESPONSE_BYTES, PasskeyConfig, Passkeys, RegisteredPasskey, WebauthnError, stored_credential_id,
};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

const ORIGIN: &str = "https://wardkey.example.org";
const RP_ID: &str = "example.org";

fn server() -> Passkeys {
    server_at(RP_ID, ORIGIN)
}

fn server_at(rp_id: &str, origin: &str) -> Passkeys {
    Passkeys::new(&PasskeyConfig { rp_id: rp_id.into(), rp_origin: origin.into(), rp_name: "Wardkey test".into() })
        .unwrap()
}

fn user() -> Uuid {
    Uuid::from_u128(0x0196_0000_0000_7000_8000_0000_0000_0001)
}

/// An authenticator that performs user verification (PIN or biometric).
fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

/// What a browser at `origin` answers to the creation options, as JSON text.
fn client_register(auth: &mut SoftPasskey, origin: &str, options: &Value) -> Result<String, String> {
    let options: CreationChallengeResponse = serde_json::from_str(&serde_json::to_string(options).unwrap()).unwrap();
    auth.do_registration(Url::parse(origin).unwrap(), options)
        .map(|r| serde_json::to_string(&r).unwrap())
        .map_err(|e| format!("{e:?}"))
}

/// What a browser at `origin` answers to the request options, as JSON text.
fn client_authenticate(auth: &mut SoftPasskey, origin: &str, options: &Value) -> Result<String, String> {
    let options: RequestChallengeResponse = serde_json::from_str(&serde_json::to_string(options).unwrap()).unwrap();
    auth.do_authentication(Url::parse(origin).unwrap(), options)
        .map(|r| serde_json::to_string(&r).unwrap())
        .map_err(|e| format!("{e:?}"))
}

fn register(server: &Passkeys, auth: &mut SoftPasskey, origin: &str) -> RegisteredPasskey {
    let (options, state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    let response = client_register(auth, origin, &options).unwrap();
    server.finish_registration(&response, &state).unwrap()
}

#[test]
fn register_then_authenticate() {
    let server = server();
    let mut auth = authenticator();
    let user = user();
    let (options, state) = server.start_registration(user, "claire", "Claire", &[]).unwrap();

    // What the browser is told: our RP, the user handle, and that UV is required.
    let pk = &options["publicKey"];
    assert_eq!(pk["rp"]["id"], RP_ID);
    assert_eq!(pk["rp"]["name"], "Wardkey test");
    assert_eq!(pk["user"]["name"], "claire");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required", "{options:#}");
    assert!(pk["challenge"].as_str().unwrap().len() >= 22, "{options:#}");

    let response = client_register(&mut auth, ORIGIN, &options).unwrap();
    let registered = server.finish_registration(&response, &state).unwrap();

    // The id we return is the browser's `id` (base64url, unpadded).
    let browser_id = serde_json::from_str::<Value>(&response).unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(registered.credential_id, browser_id);
    assert!(!registered.credential_id.contains(['=', '+', '/']));
    assert_eq!(stored_credential_id(&registered.passkey_json).unwrap(), registered.credential_id);

    let (options, state) = server.start_authentication(std::slice::from_ref(&registered.passkey_json)).unwrap();
    let pk = &options["publicKey"];
    assert_eq!(pk["rpId"], RP_ID);
    assert_eq!(pk["userVerification"], "required", "{options:#}");
    assert_eq!(pk["allowCredentials"][0]["id"], registered.credential_id, "{options:#}");
    let response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();
    let assertion = server.finish_authentication(&response, &state).unwrap();
    assert_eq!(assertion.credential_id, registered.credential_id);
    assert!(assertion.user_verified);
}

#[test]
fn localhost_over_http_works() {
    let server = server_at("localhost", "http://localhost:8080");
    let mut auth = authenticator();
    let registered = register(&server, &mut auth, "http://localhost:8080");
    let (options, state) = server.start_authentication(&[registered.passkey_json]).unwrap();
    let response = client_authenticate(&mut auth, "http://localhost:8080", &options).unwrap();
    assert!(server.finish_authentication(&response, &state).is_ok());
}

#[test]
fn user_verification_is_required() {
    let server = server();
    // An authenticator that cannot verify the user (no PIN, no biometric).
    let mut auth = SoftPasskey::new(false);
    let (options, state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    // A conforming client gives up, since the options require UV...
    assert!(client_register(&mut auth, ORIGIN, &options).is_err());

    // ...and a client that downgrades the requirement gets a response without the UV flag
    // past the authenticator, which the server refuses.
    let mut downgraded = options.clone();
    downgraded["publicKey"]["authenticatorSelection"]["userVerification"] = "discouraged".into();
    let response = client_register(&mut auth, ORIGIN, &downgraded).unwrap();
    assert_eq!(
        server.finish_registration(&response, &state).unwrap_err(),
        WebauthnError::Rejected("user_not_verified")
    );
}

/// Origins a phishing site (or a misconfigured proxy) would present. The client accepts
/// each for RP id `example.org` (same registrable domain), so the server must refuse them.
const OTHER_ORIGINS: [&str; 3] =
    ["https://evil.example.org", "https://wardkey.example.org:8443", "https://login.wardkey.example.org"];

#[test]
fn other_origin_is_rejected_at_registration() {
    let server = server();
    for origin in OTHER_ORIGINS {
        let mut auth = authenticator();
        let (options, state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
        let response = client_register(&mut auth, origin, &options).unwrap();
        assert_eq!(
            server.finish_registration(&response, &state).unwrap_err(),
            WebauthnError::Rejected("origin_mismatch"),
            "{origin}"
        );
    }
}

#[test]
fn other_origin_is_rejected_at_authentication() {
    let server = server();
    let mut auth = authenticator();
    let registered = register(&server, &mut auth, ORIGIN);
    for origin in OTHER_ORIGINS {
        let (options, state) = server.start_authentication(std::slice::from_ref(&registered.passkey_json)).unwrap();
        let response = client_authenticate(&mut auth, origin, &options).unwrap();
        assert_eq!(
            server.finish_authentication(&response, &state).unwrap_err(),
            WebauthnError::Rejected("origin_mismatch"),
            "{origin}"
        );
    }
}

#[test]
fn other_rp_id_is_rejected() {
    let server = server();
    let mut auth = authenticator();

    // A client that lets a page change the RP id to another valid one for its origin: the
    // authenticator signs a hash of the wrong RP id.
    let (mut options, state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    options["publicKey"]["rp"]["id"] = "wardkey.example.org".into();
    let response = client_register(&mut auth, ORIGIN, &options).unwrap();
    assert_eq!(server.finish_registration(&response, &state).unwrap_err(), WebauthnError::Rejected("rp_id_mismatch"));

    // A phishing site on another domain relays our options under its own RP id (the
    // client would refuse ours there): wrong origin and wrong RP id hash.
    let (mut options, state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    options["publicKey"]["rp"]["id"] = "evil.test".into();
    let response = client_register(&mut auth, "https://evil.test", &options).unwrap();
    assert!(matches!(
        server.finish_registration(&response, &state).unwrap_err(),
        WebauthnError::Rejected("origin_mismatch" | "rp_id_mismatch")
    ));

    // The same for an assertion.
    let registered = register(&server, &mut auth, ORIGIN);
    let (mut options, state) = server.start_authentication(std::slice::from_ref(&registered.passkey_json)).unwrap();
    options["publicKey"]["rpId"] = "wardkey.example.org".into();
    let response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();
    assert_eq!(server.finish_authentication(&response, &state).unwrap_err(), WebauthnError::Rejected("rp_id_mismatch"));
}

#[test]
fn assertion_replayed_against_a_new_challenge_is_rejected() {
    let server = server();
    let mut auth = authenticator();
    let registered = register(&server, &mut auth, ORIGIN);
    let stored = std::slice::from_ref(&registered.passkey_json);

    let (options, state) = server.start_authentication(stored).unwrap();
    let response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();
    assert!(server.finish_authentication(&response, &state).is_ok());

    let (_, new_state) = server.start_authentication(stored).unwrap();
    assert_eq!(
        server.finish_authentication(&response, &new_state).unwrap_err(),
        WebauthnError::Rejected("challenge_mismatch")
    );

    // webauthn-rs keeps no memory of used states: the same state with the same response
    // verifies again. Single use is the caller's job (delete the state on first use).
    assert!(server.finish_authentication(&response, &state).is_ok());
}

#[test]
fn registration_response_replayed_against_a_new_challenge_is_rejected() {
    let server = server();
    let mut auth = authenticator();
    let (options, _) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    let response = client_register(&mut auth, ORIGIN, &options).unwrap();
    let (_, other_state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    assert_eq!(
        server.finish_registration(&response, &other_state).unwrap_err(),
        WebauthnError::Rejected("challenge_mismatch")
    );
}

#[test]
fn state_of_the_other_ceremony_is_refused() {
    let server = server();
    let mut auth = authenticator();
    let (reg_options, reg_state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    let reg_response = client_register(&mut auth, ORIGIN, &reg_options).unwrap();
    let registered = server.finish_registration(&reg_response, &reg_state).unwrap();
    let (options, auth_state) = server.start_authentication(&[registered.passkey_json]).unwrap();
    let response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();

    assert_eq!(server.finish_authentication(&response, &reg_state).unwrap_err(), WebauthnError::State);
    assert!(server.finish_registration(&reg_response, &auth_state).is_err());
}

#[test]
fn existing_credentials_are_excluded_in_options() {
    let server = server();
    let mut auth = authenticator();
    let first = register(&server, &mut auth, ORIGIN);
    let (options, state) =
        server.start_registration(user(), "claire", "Claire", std::slice::from_ref(&first.credential_id)).unwrap();
    assert_eq!(options["publicKey"]["excludeCredentials"][0]["id"], first.credential_id);
    // SoftPasskey ignores the exclusion list (a hardware key would refuse) and makes a new
    // credential, which is fine: only the listed ids are excluded.
    let response = client_register(&mut auth, ORIGIN, &options).unwrap();
    let second = server.finish_registration(&response, &state).unwrap();
    assert_ne!(second.credential_id, first.credential_id);
}

#[test]
fn credential_not_in_the_allowed_list_is_rejected() {
    let server = server();
    let mut alice_key = authenticator();
    let mut mallory_key = authenticator();
    let alice = register(&server, &mut alice_key, ORIGIN);
    let mallory = register(&server, &mut mallory_key, ORIGIN);

    let (options, state) = server.start_authentication(std::slice::from_ref(&alice.passkey_json)).unwrap();
    // An honest client with only Mallory's key finds nothing to sign with...
    assert!(client_authenticate(&mut mallory_key, ORIGIN, &options).is_err());

    // ...so Mallory rewrites the allow list to her own credential and signs the challenge.
    let mut forged = options.clone();
    forged["publicKey"]["allowCredentials"][0]["id"] = mallory.credential_id.clone().into();
    let response = client_authenticate(&mut mallory_key, ORIGIN, &forged).unwrap();
    assert_eq!(
        server.finish_authentication(&response, &state).unwrap_err(),
        WebauthnError::Rejected("credential_not_allowed")
    );

    // Both allowed: either key may answer.
    let (options, state) =
        server.start_authentication(&[alice.passkey_json.clone(), mallory.passkey_json.clone()]).unwrap();
    let response = client_authenticate(&mut mallory_key, ORIGIN, &options).unwrap();
    let assertion = server.finish_authentication(&response, &state).unwrap();
    assert_eq!(assertion.credential_id, mallory.credential_id);
}

#[test]
fn update_stored_after_assertion() {
    let server = server();
    let mut auth = authenticator();
    let mut other = authenticator();
    let registered = register(&server, &mut auth, ORIGIN);
    let unrelated = register(&server, &mut other, ORIGIN);
    let mut stored = registered.passkey_json.clone();

    let mut last_counter = 0;
    for _ in 0..3 {
        let (options, state) = server.start_authentication(std::slice::from_ref(&stored)).unwrap();
        let response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();
        let assertion = server.finish_authentication(&response, &state).unwrap();
        // SoftPasskey keeps a signature counter, so every assertion moves it.
        assert!(assertion.counter > last_counter, "{assertion:?}");
        last_counter = assertion.counter;

        let updated =
            Passkeys::update_stored(&stored, &assertion).unwrap().expect("a counter that moved must be saved");
        assert!(updated.contains(&format!("\"counter\":{}", assertion.counter)), "{updated}");
        assert_eq!(stored_credential_id(&updated).unwrap(), registered.credential_id);
        // Applying the same assertion again changes nothing more.
        assert_eq!(Passkeys::update_stored(&updated, &assertion).unwrap(), None);
        stored = updated;

        // The assertion belongs to one credential only.
        assert_eq!(
            Passkeys::update_stored(&unrelated.passkey_json, &assertion).unwrap_err(),
            WebauthnError::Rejected("credential_mismatch")
        );
        assert_eq!(Passkeys::update_stored("{", &assertion).unwrap_err(), WebauthnError::State);
    }

    // Why saving matters: once the stored counter is ahead of what the authenticator
    // signs (as after a cloned authenticator was used), the assertion is refused.
    let ahead = stored.replace(&format!("\"counter\":{last_counter}"), &format!("\"counter\":{}", last_counter + 100));
    assert_ne!(ahead, stored);
    let (options, state) = server.start_authentication(std::slice::from_ref(&ahead)).unwrap();
    let response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();
    assert_eq!(
        server.finish_authentication(&response, &state).unwrap_err(),
        WebauthnError::Rejected("counter_regressed")
    );
}

// ---------------------------------------------------------------- malformed input

/// A valid registration and authentication response with their states.
struct Ceremonies {
    server: Passkeys,
    reg_response: String,
    reg_state: String,
    auth_response: String,
    auth_state: String,
}

fn ceremonies() -> Ceremonies {
    let server = server();
    let mut auth = authenticator();
    let (options, reg_state) = server.start_registration(user(), "claire", "Claire", &[]).unwrap();
    let reg_response = client_register(&mut auth, ORIGIN, &options).unwrap();
    let registered = server.finish_registration(&reg_response, &reg_state).unwrap();
    let (options, auth_state) = server.start_authentication(&[registered.passkey_json]).unwrap();
    let auth_response = client_authenticate(&mut auth, ORIGIN, &options).unwrap();
    Ceremonies { server, reg_response, reg_state, auth_response, auth_state }
}

/// Every string inside a JSON value, by JSON pointer.
fn string_pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::String(_) => out.push(at),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_pointers(item, format!("{at}/{i}"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                string_pointers(item, format!("{at}/{k}"), out);
            }
        }
        _ => {}
    }
}

/// Variants of one string field: truncated (breaking base64 and what it encodes), with a
/// character flipped, emptied, and replaced by something that is not base64 at all.
fn mutations(s: &str) -> Vec<String> {
    let mut out = vec![String::new(), "!!!".into(), "A".into(), format!("{s}A"), format!("{s}==")];
    for cut in [1, 2, 3, 5, 17, s.len() / 2, s.len().saturating_sub(1)] {
        if cut < s.len() && s.is_char_boundary(cut) {
            out.push(s[..cut].to_owned());
        }
    }
    for at in [0, s.len() / 3, s.len() / 2, s.len().saturating_sub(1)] {
        if let Some(c) = s.get(at..at + 1) {
            let flipped = if c == "A" { "B" } else { "A" };
            out.push(format!("{}{flipped}{}", &s[..at], &s[at + 1..]));
        }
    }
    out
}

fn mutated_responses(response: &str) -> Vec<String> {
    let value: Value = serde_json::from_str(response).unwrap();
    let mut pointers = Vec::new();
    string_pointers(&value, String::new(), &mut pointers);
    assert!(pointers.len() >= 4, "{value:#}");
    let mut out = Vec::new();
    for pointer in pointers {
        let original = value.pointer(&pointer).unwrap().as_str().unwrap().to_owned();
        for m in mutations(&original) {
            let mut v = value.clone();
            *v.pointer_mut(&pointer).unwrap() = Value::String(m);
            out.push(serde_json::to_string(&v).unwrap());
        }
        // The field missing, or of the wrong type.
        let mut v = value.clone();
        *v.pointer_mut(&pointer).unwrap() = Value::Null;
        out.push(serde_json::to_string(&v).unwrap());
        let mut v = value.clone();
        *v.pointer_mut(&pointer).unwrap() = Value::from(7);
        out.push(serde_json::to_string(&v).unwrap());
    }
    out
}

/// The same JSON with base64 padding removed from every string: webauthn-rs decodes padded
/// and unpadded base64url alike, so padding a field changes nothing that is verified.
fn without_padding(json: &str) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::String(s) => *s = s.trim_end_matches('=').to_owned(),
            Value::Array(items) => items.iter_mut().for_each(strip),
            Value::Object(map) => map.values_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v: Value = serde_json::from_str(json).unwrap();
    strip(&mut v);
    v
}

#[test]
fn mutated_registration_responses_are_errors() {
    let c = ceremonies();
    let original = without_padding(&c.reg_response);
    let mutated = mutated_responses(&c.reg_response);
    assert!(mutated.len() > 50, "{}", mutated.len());
    for response in mutated {
        let result = c.server.finish_registration(&response, &c.reg_state);
        if without_padding(&response) != original {
            assert!(result.is_err(), "{response}");
        }
    }
}

#[test]
fn mutated_authentication_responses_are_errors() {
    let c = ceremonies();
    let original = without_padding(&c.auth_response);
    let mutated = mutated_responses(&c.auth_response);
    assert!(mutated.len() > 50, "{}", mutated.len());
    for response in mutated {
        let result = c.server.finish_authentication(&response, &c.auth_state);
        if without_padding(&response) != original {
            assert!(result.is_err(), "{response}");
        }
    }
}

#[test]
fn malformed_json_is_malformed() {
    let c = ceremonies();
    for bad in ["", "{", "null", "[]", "{}", "\"text\"", "{\"id\": 1}", &c.reg_response[..c.reg_response.len() / 2]] {
        assert_eq!(c.server.finish_registration(bad, &c.reg_state).unwrap_err(), WebauthnError::Malformed, "{bad}");
        assert_eq!(c.server.finish_authentication(bad, &c.auth_state).unwrap_err(), WebauthnError::Malformed, "{bad}");
    }
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let c = ceremonies();
    // Valid JSON, padded with whitespace past the limit: refused on size alone.
    let padded = format!("{}{}", c.auth_response, " ".repeat(MAX_CLIENT_RESPONSE_BYTES + 1 - c.auth_response.len()));
    assert_eq!(padded.len(), MAX_CLIENT_RESPONSE_BYTES + 1);
    assert_eq!(c.server.finish_authentication(&padded, &c.auth_state).unwrap_err(), WebauthnError::Malformed);
    let padded = format!("{}{}", c.reg_response, " ".repeat(MAX_CLIENT_RESPONSE_BYTES + 1 - c.reg_response.len()));
    assert_eq!(c.server.finish_registration(&padded, &c.reg_state).unwrap_err(), WebauthnError::Malformed);
    // Just under the limit is parsed (and verifies).
    let padded = format!("{}{}", c.auth_response, " ".repeat(MAX_CLIENT_RESPONSE_BYTES - c.auth_response.len()));
    assert!(c.server.finish_authentication(&padded, &c.auth_state).is_ok());
    // A huge string in one field.
    let mut v: Value = serde_json::from_str(&c.auth_response).unwrap();
    v["response"]["signature"] = "A".repeat(10 * MAX_CLIENT_RESPONSE_BYTES).into();
    assert_eq!(c.server.finish_authentication(&v.to_string(), &c.auth_state).unwrap_err(), WebauthnError::Malformed);
}

#[test]
fn garbage_state_is_a_state_error() {
    let c = ceremonies();
    let huge = format!("\"{}\"", "A".repeat(2 * 1024 * 1024));
    let truncated = &c.auth_state[..c.auth_state.len() / 2];
    for bad in ["", "{", "null", "{}", "[]", "\"state\"", truncated, &huge] {
        assert_eq!(
            c.server.finish_authentication(&c.auth_response, bad).unwrap_err(),
            WebauthnError::State,
            "{bad:.40}"
        );
        assert_eq!(c.server.finish_registration(&c.reg_response, bad).unwrap_err(), WebauthnError::State, "{bad:.40}");
    }
    // A state whose fields were tampered with parses or not, but never verifies.
    let mut v: Value = serde_json::from_str(&c.auth_state).unwrap();
    let mut pointers = Vec::new();
    string_pointers(&v, String::new(), &mut pointers);
    for pointer in pointers {
        let original = v.pointer(&pointer).unwrap().clone();
        *v.pointer_mut(&pointer).unwrap() = Value::String("AAAA".into());
        let _ = c.server.finish_authentication(&c.auth_response, &v.to_string());
        *v.pointer_mut(&pointer).unwrap() = original;
    }
}

#[test]
fn error_codes_are_stable() {
    assert_eq!(WebauthnError::Malformed.code(), "webauthn_malformed");
    assert_eq!(WebauthnError::State.code(), "webauthn_state");
    assert_eq!(WebauthnError::Rejected("x").code(), "webauthn_rejected");
    assert_eq!(WebauthnError::Config(String::new()).code(), "webauthn_config");
}
