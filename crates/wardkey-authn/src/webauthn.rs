//! Passkeys (WebAuthn, relying-party side) over `webauthn-rs`.
//!
//! Everything crosses this boundary as JSON text so the store and the HTTP layer never see a
//! webauthn type: the options for the browser, the ceremony state the server keeps between
//! the two requests of a ceremony, the browser's answer and the registered credential.
//!
//! The checks that make passkeys phishing-resistant (challenge, origin, RP id hash, user
//! presence and verification, signature, allowed credentials) are `webauthn-rs`'s; this
//! module bounds the input, validates the configuration up front and turns every failure
//! into a [`WebauthnError`] instead of letting it escape as a panic.
//!
//! Contract with the caller:
//! - keep each ceremony state server side and delete it after its first use, whatever the
//!   outcome: `webauthn-rs` itself does not remember which states were used;
//! - refuse a registration whose credential id is already registered (to anyone), for
//!   example with a unique index on the credential id;
//! - after a successful authentication, save what [`Passkeys::update_stored`] returns.

use data_encoding::BASE64URL_NOPAD;
use url::{Host, Url};
use uuid::Uuid;
use webauthn_rs::prelude::{
    AuthenticationResult, CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Webauthn, WebauthnBuilder, WebauthnError as Inner,
};

/// Largest browser response accepted; refused before parsing. Real responses are a few KiB
/// (the attestation object dominates).
pub const MAX_CLIENT_RESPONSE_BYTES: usize = 64 * 1024;
/// Largest ceremony state accepted. An authentication state carries a copy of every passkey
/// it allows, so this follows from [`MAX_PASSKEYS`] and [`MAX_STORED_PASSKEY_BYTES`].
pub const MAX_STATE_BYTES: usize = 1024 * 1024;
/// Largest stored passkey accepted (they are well under 1 KiB for the usual key types).
pub const MAX_STORED_PASSKEY_BYTES: usize = 8 * 1024;
/// Most passkeys one ceremony may list (allowed in an authentication, excluded in a
/// registration).
pub const MAX_PASSKEYS: usize = 100;
/// WebAuthn's own limit on a credential id (Level 3, §5.1, `rawId`).
pub const MAX_CREDENTIAL_ID_BYTES: usize = 1023;
/// Bound on user names, display names and the RP name handed to the authenticator.
pub const MAX_NAME_BYTES: usize = 256;

/// Where the relying party lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyConfig {
    /// The RP id credentials are bound to: the origin's host or a parent domain of it.
    /// Changing it later orphans every registered passkey.
    pub rp_id: String,
    /// The exact origin browsers will report, e.g. `https://wardkey.example.org` or
    /// `http://localhost:8080` for development.
    pub rp_origin: String,
    /// Shown to the user by some authenticators; may change at any time.
    pub rp_name: String,
}

/// Why a passkey ceremony (or its set-up) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    #[error("invalid passkey configuration: {0}")]
    Config(String),
    #[error("the passkey request is malformed or too large")]
    Malformed,
    /// Verification failed. The reason is short, stable and meant for the audit log, not
    /// for the client (which should get one answer for every rejection).
    #[error("the passkey was rejected ({0})")]
    Rejected(&'static str),
    /// The ceremony state or a stored passkey could not be read: lost, corrupted, or the
    /// state of another kind of ceremony.
    #[error("the passkey ceremony state is missing or invalid")]
    State,
}

impl WebauthnError {
    /// A stable code for APIs and audit events.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "webauthn_config",
            Self::Malformed => "webauthn_malformed",
            Self::Rejected(_) => "webauthn_rejected",
            Self::State => "webauthn_state",
        }
    }
}

/// A credential that passed registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredPasskey {
    /// base64url without padding, as browsers report `PublicKeyCredential.id`.
    pub credential_id: String,
    /// The credential (public key, counter, flags) to store and hand back to
    /// [`Passkeys::start_authentication`] and [`Passkeys::update_stored`].
    pub passkey_json: String,
}

/// A successful authentication.
#[derive(Debug, Clone)]
pub struct PasskeyAssertion {
    /// base64url without padding; one of the credentials the ceremony allowed.
    pub credential_id: String,
    /// Always true for a passkey that got this far (see [`Passkeys`]), reported so the
    /// caller can record it with the session's factors.
    pub user_verified: bool,
    /// The authenticator's signature counter (0 for authenticators that keep none).
    pub counter: u32,
    /// Whether the credential is backed up (synced passkey), as flagged by this assertion.
    pub backup_state: bool,
    // Kept whole because `Passkey::update_credential` wants the library's own result.
    result: AuthenticationResult,
}

/// The relying party. It holds configuration only: one per server, shared by all requests.
///
/// User verification: `webauthn-rs` asks for it when registering and authenticating a
/// passkey and refuses a response without the UV flag, so a passkey alone is a
/// multi-factor, phishing-resistant login.
#[derive(Debug, Clone)]
pub struct Passkeys {
    inner: Webauthn,
}

impl Passkeys {
    /// Validates the configuration: the origin is an absolute `https` URL (or `http` on
    /// `localhost`, which browsers treat as a secure context) without path, query or
    /// credentials, and the RP id is its host or a parent domain of it with at least two
    /// labels.
    ///
    /// The parent-domain check has no public suffix list, so it cannot refuse an RP id such
    /// as `co.uk`; browsers do and will then fail every ceremony.
    pub fn new(cfg: &PasskeyConfig) -> Result<Self, WebauthnError> {
        let origin = check_origin(&cfg.rp_origin)?;
        check_rp_id(&cfg.rp_id, &origin)?;
        if cfg.rp_name.trim().is_empty() || cfg.rp_name.len() > MAX_NAME_BYTES {
            return Err(WebauthnError::Config(format!("rp_name must be 1 to {MAX_NAME_BYTES} bytes")));
        }
        let inner = WebauthnBuilder::new(&cfg.rp_id, &origin)
            .map_err(|e| WebauthnError::Config(format!("rp_id / rp_origin: {e}")))?
            .rp_name(&cfg.rp_name)
            .build()
            .map_err(|e| WebauthnError::Config(e.to_string()))?;
        Ok(Self { inner })
    }

    /// Begins registering a passkey for `user_id`. Returns the options for
    /// `navigator.credentials.create()` (the whole `CreationChallengeResponse`, whose
    /// `publicKey` member is the argument) and the state to keep server side.
    ///
    /// `existing_credential_ids` (base64url) are the user's registered credentials, so the
    /// same authenticator is not registered twice.
    pub fn start_registration(
        &self,
        user_id: Uuid,
        username: &str,
        display_name: &str,
        existing_credential_ids: &[String],
    ) -> Result<(serde_json::Value, String), WebauthnError> {
        if username.is_empty()
            || username.len() > MAX_NAME_BYTES
            || display_name.is_empty()
            || display_name.len() > MAX_NAME_BYTES
            || existing_credential_ids.len() > MAX_PASSKEYS
        {
            return Err(WebauthnError::Malformed);
        }
        let exclude = existing_credential_ids
            .iter()
            .map(|id| decode_credential_id(id))
            .collect::<Result<Vec<CredentialID>, _>>()?;
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let (options, state) =
            self.inner.start_passkey_registration(user_id, username, display_name, exclude).map_err(start_error)?;
        Ok((to_value(&options)?, to_state(&state)?))
    }

    /// Verifies the browser's answer to [`Passkeys::start_registration`] against its state.
    pub fn finish_registration(
        &self,
        client_response_json: &str,
        state_json: &str,
    ) -> Result<RegisteredPasskey, WebauthnError> {
        let response: RegisterPublicKeyCredential = parse_client(client_response_json)?;
        check_envelope(&response.id, &response.raw_id, &response.type_)?;
        let state: PasskeyRegistration = parse_state(state_json)?;
        let passkey = self.inner.finish_passkey_registration(&response, &state).map_err(ceremony_error)?;
        let credential_id = encode_credential_id(passkey.cred_id().as_ref());
        let passkey_json = serde_json::to_string(&passkey).map_err(|_| WebauthnError::State)?;
        if passkey_json.len() > MAX_STORED_PASSKEY_BYTES {
            // It could be stored but never used again: refuse it now rather than later.
            return Err(WebauthnError::Rejected("credential_too_large"));
        }
        Ok(RegisteredPasskey { credential_id, passkey_json })
    }

    /// Begins an authentication with any of the user's stored passkeys. Returns the options
    /// for `navigator.credentials.get()` and the state to keep server side.
    pub fn start_authentication(
        &self,
        stored_passkeys_json: &[String],
    ) -> Result<(serde_json::Value, String), WebauthnError> {
        if stored_passkeys_json.is_empty() {
            return Err(WebauthnError::Rejected("no_passkeys"));
        }
        if stored_passkeys_json.len() > MAX_PASSKEYS {
            return Err(WebauthnError::Malformed);
        }
        let passkeys =
            stored_passkeys_json.iter().map(|json| parse_stored(json)).collect::<Result<Vec<Passkey>, _>>()?;
        let (options, state) = self.inner.start_passkey_authentication(&passkeys).map_err(start_error)?;
        Ok((to_value(&options)?, to_state(&state)?))
    }

    /// Verifies the browser's answer to [`Passkeys::start_authentication`] against its
    /// state.
    pub fn finish_authentication(
        &self,
        client_response_json: &str,
        state_json: &str,
    ) -> Result<PasskeyAssertion, WebauthnError> {
        let response: PublicKeyCredential = parse_client(client_response_json)?;
        check_envelope(&response.id, &response.raw_id, &response.type_)?;
        let state: PasskeyAuthentication = parse_state(state_json)?;
        let result = self.inner.finish_passkey_authentication(&response, &state).map_err(ceremony_error)?;
        Ok(PasskeyAssertion {
            credential_id: encode_credential_id(result.cred_id().as_ref()),
            user_verified: result.user_verified(),
            counter: result.counter(),
            backup_state: result.backup_state(),
            result,
        })
    }

    /// Applies an assertion's counter and backup-state to the stored passkey it was made
    /// with. `Ok(None)`: nothing changed, nothing to write. `Rejected` if the assertion
    /// belongs to another credential.
    pub fn update_stored(
        stored_passkey_json: &str,
        assertion: &PasskeyAssertion,
    ) -> Result<Option<String>, WebauthnError> {
        let mut passkey = parse_stored(stored_passkey_json)?;
        match passkey.update_credential(&assertion.result) {
            None => Err(WebauthnError::Rejected("credential_mismatch")),
            Some(false) => Ok(None),
            Some(true) => serde_json::to_string(&passkey).map(Some).map_err(|_| WebauthnError::State),
        }
    }
}

/// The credential id of a stored passkey (base64url), e.g. to build the exclusion list of
/// [`Passkeys::start_registration`] from stored rows that lack the column.
pub fn stored_credential_id(stored_passkey_json: &str) -> Result<String, WebauthnError> {
    parse_stored(stored_passkey_json).map(|p| encode_credential_id(p.cred_id().as_ref()))
}

fn check_origin(raw: &str) -> Result<Url, WebauthnError> {
    let bad = |why: &str| WebauthnError::Config(format!("rp_origin {raw:?}: {why}"));
    if raw.len() > 2048 {
        return Err(bad("too long"));
    }
    let url = Url::parse(raw).map_err(|e| bad(&e.to_string()))?;
    let localhost = matches!(url.host(), Some(Host::Domain("localhost")));
    match url.scheme() {
        "https" => {}
        "http" if localhost => {}
        _ => return Err(bad("must be https (http only on localhost)")),
    }
    if !matches!(url.host(), Some(Host::Domain(_))) {
        // WebAuthn RP ids are domains; browsers refuse IP-address origins.
        return Err(bad("the host must be a domain name"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        // A browser reports scheme://host[:port] only; anything more could never match.
        return Err(bad("must be scheme://host[:port] only"));
    }
    Ok(url)
}

fn check_rp_id(rp_id: &str, origin: &Url) -> Result<(), WebauthnError> {
    let bad = |why: &str| WebauthnError::Config(format!("rp_id {rp_id:?}: {why}"));
    let host = origin.host_str().unwrap_or_default();
    if rp_id.is_empty() || rp_id.len() > 253 {
        return Err(bad("must be 1 to 253 bytes"));
    }
    if rp_id != rp_id.to_ascii_lowercase() || rp_id.starts_with('.') || rp_id.ends_with('.') {
        // `Url` lowercases and punycodes the host, so only the canonical form can match.
        return Err(bad("must be a lowercase domain (punycode for IDNs)"));
    }
    if rp_id == host {
        return Ok(());
    }
    let is_parent = host.strip_suffix(rp_id).is_some_and(|prefix| prefix.ends_with('.'));
    if !is_parent {
        return Err(bad(&format!("must be {host:?} or a parent domain of it")));
    }
    if !rp_id.contains('.') {
        // A top-level domain is never registrable; this is the part of the public suffix
        // rule that needs no list.
        return Err(bad("must not be a top-level domain"));
    }
    Ok(())
}

fn decode_credential_id(id: &str) -> Result<CredentialID, WebauthnError> {
    // base64url of MAX_CREDENTIAL_ID_BYTES, checked before decoding allocates.
    if id.is_empty() || id.len() > MAX_CREDENTIAL_ID_BYTES.div_ceil(3) * 4 {
        return Err(WebauthnError::Malformed);
    }
    let bytes = BASE64URL_NOPAD.decode(id.as_bytes()).map_err(|_| WebauthnError::Malformed)?;
    if bytes.len() > MAX_CREDENTIAL_ID_BYTES {
        return Err(WebauthnError::Malformed);
    }
    Ok(bytes)
}

fn encode_credential_id(id: &[u8]) -> String {
    BASE64URL_NOPAD.encode(id)
}

fn parse_client<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, WebauthnError> {
    if json.len() > MAX_CLIENT_RESPONSE_BYTES {
        return Err(WebauthnError::Malformed);
    }
    serde_json::from_str(json).map_err(|_| WebauthnError::Malformed)
}

/// `webauthn-rs` verifies `rawId` and ignores `id` and `type`. A response whose `id` is not
/// the encoding of its `rawId` did not come from a conforming client, and refusing it means
/// whatever the HTTP layer logs from `id` names the credential that was verified.
fn check_envelope(id: &str, raw_id: &[u8], kind: &str) -> Result<(), WebauthnError> {
    if kind != "public-key" || id != encode_credential_id(raw_id) {
        return Err(WebauthnError::Malformed);
    }
    Ok(())
}

fn parse_state<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, WebauthnError> {
    if json.len() > MAX_STATE_BYTES {
        return Err(WebauthnError::State);
    }
    serde_json::from_str(json).map_err(|_| WebauthnError::State)
}

fn parse_stored(json: &str) -> Result<Passkey, WebauthnError> {
    if json.len() > MAX_STORED_PASSKEY_BYTES {
        return Err(WebauthnError::State);
    }
    serde_json::from_str(json).map_err(|_| WebauthnError::State)
}

fn to_value<T: serde::Serialize>(options: &T) -> Result<serde_json::Value, WebauthnError> {
    serde_json::to_value(options).map_err(|e| WebauthnError::Config(e.to_string()))
}

fn to_state<T: serde::Serialize>(state: &T) -> Result<String, WebauthnError> {
    serde_json::to_string(state).map_err(|_| WebauthnError::State)
}

/// Errors from starting a ceremony: the caller's input or the configuration.
fn start_error(e: Inner) -> WebauthnError {
    match e {
        Inner::InvalidUsername | Inner::InvalidUserUniqueId => WebauthnError::Malformed,
        other => WebauthnError::Config(other.to_string()),
    }
}

/// Errors from finishing a ceremony, named for the audit log.
fn ceremony_error(e: Inner) -> WebauthnError {
    let reason = match e {
        Inner::ParseBase64Failure(_)
        | Inner::ParseCBORFailure(_)
        | Inner::ParseJSONFailure(_)
        | Inner::ParseNOMFailure
        | Inner::ParseInsufficientBytesAvailable
        | Inner::COSEKeyInvalidCBORValue
        | Inner::AttestationStatementMapInvalid
        | Inner::MissingAttestationCredentialData => return WebauthnError::Malformed,
        Inner::InvalidClientDataType => "client_data_type",
        Inner::MismatchedChallenge => "challenge_mismatch",
        Inner::InvalidRPOrigin => "origin_mismatch",
        Inner::InvalidRPIDHash => "rp_id_mismatch",
        Inner::CredentialCrossOrigin => "cross_origin",
        Inner::UserNotPresent => "user_not_present",
        Inner::UserNotVerified => "user_not_verified",
        Inner::CredentialNotFound => "credential_not_allowed",
        Inner::CredentialExcludedFromRequest | Inner::CredentialAlreadyExists => "credential_excluded",
        Inner::CredentialPossibleCompromise => "counter_regressed",
        Inner::CredentialBackupEligibilityInconsistent => "backup_eligibility_changed",
        Inner::CredentialAlteredAlgFromRequest | Inner::CredentialInsecureCryptography => "algorithm_not_allowed",
        Inner::AuthenticationFailure | Inner::SignatureInvalid => "signature_invalid",
        _ => "verification_failed",
    };
    WebauthnError::Rejected(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(rp_id: &str, rp_origin: &str) -> PasskeyConfig {
        PasskeyConfig { rp_id: rp_id.into(), rp_origin: rp_origin.into(), rp_name: "Wardkey".into() }
    }

    #[test]
    fn accepts_host_and_parent_domain() {
        assert!(Passkeys::new(&cfg("wardkey.example.org", "https://wardkey.example.org")).is_ok());
        assert!(Passkeys::new(&cfg("example.org", "https://wardkey.example.org:8443")).is_ok());
        assert!(Passkeys::new(&cfg("localhost", "http://localhost:8080")).is_ok());
    }

    #[test]
    fn refuses_bad_configuration() {
        for (rp_id, origin) in [
            ("example.org", "https://wardkey.example.net"),
            ("ample.org", "https://wardkey.example.org"),
            ("org", "https://wardkey.example.org"),
            ("Example.org", "https://wardkey.example.org"),
            ("", "https://wardkey.example.org"),
            ("wardkey.example.org", "http://wardkey.example.org"),
            ("wardkey.example.org", "https://wardkey.example.org/login"),
            ("wardkey.example.org", "https://wardkey.example.org/?a=b"),
            ("wardkey.example.org", "https://user@wardkey.example.org"),
            ("wardkey.example.org", "ftp://wardkey.example.org"),
            ("wardkey.example.org", "not a url"),
            ("127.0.0.1", "https://127.0.0.1"),
            ("localhost", "http://127.0.0.1:8080"),
        ] {
            let err = Passkeys::new(&cfg(rp_id, origin)).unwrap_err();
            assert_eq!(err.code(), "webauthn_config", "{rp_id} {origin}");
        }
        let mut c = cfg("example.org", "https://example.org");
        c.rp_name = String::new();
        assert!(Passkeys::new(&c).is_err());
    }

    #[test]
    fn bounds_registration_input() {
        let pk = Passkeys::new(&cfg("example.org", "https://example.org")).unwrap();
        let long = "a".repeat(MAX_NAME_BYTES + 1);
        let id = Uuid::nil();
        assert_eq!(pk.start_registration(id, &long, "A", &[]).unwrap_err(), WebauthnError::Malformed);
        assert_eq!(pk.start_registration(id, "a", "A", &["not base64!".into()]).unwrap_err(), WebauthnError::Malformed);
        let too_many = vec!["AAAA".to_string(); MAX_PASSKEYS + 1];
        assert_eq!(pk.start_registration(id, "a", "A", &too_many).unwrap_err(), WebauthnError::Malformed);
        assert!(pk.start_registration(id, "a", "A", &["AAAA".into()]).is_ok());
        assert_eq!(pk.start_authentication(&[]).unwrap_err(), WebauthnError::Rejected("no_passkeys"));
        assert_eq!(pk.start_authentication(&["{}".into()]).unwrap_err(), WebauthnError::State);
    }
}
