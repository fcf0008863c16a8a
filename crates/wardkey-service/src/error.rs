use wardkey_domain::{DomainError, FieldError, Scope};
use wardkey_store::StoreError;

/// Every way a service call can fail. The HTTP edge turns each into one problem+json type;
/// `Internal` carries detail for the log only, never for the client.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("authentication required")]
    Unauthenticated,
    #[error("the credential lacks the {needed} scope")]
    Forbidden { needed: Scope },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("{kind} with {field} {value:?} already exists")]
    Duplicate { kind: &'static str, field: &'static str, value: String },
    #[error("{kind} {id} has version {actual}, not {expected}")]
    VersionConflict { kind: &'static str, id: String, expected: i64, actual: i64 },
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
    #[error("illegal lifecycle transition from {from} to {to}")]
    IllegalTransition { from: String, to: String },
    #[error("separation-of-duties rule {rule_name} forbids holding both {left} and {right}")]
    SodViolation { rule_id: String, rule_name: String, left: String, right: String },
    /// Sign-in refused. One answer for unknown user, wrong password, locked, disabled or
    /// not-yet-active accounts; the audit event keeps the reason.
    #[error("sign-in failed: the username or password is wrong, or the account cannot sign in now")]
    LoginFailed,
    #[error("the second factor was not accepted")]
    SecondFactorFailed,
    #[error("too many attempts; try again in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("this action needs a fresh second factor (step-up): verify again, then retry")]
    StepUpRequired,
    #[error("{message}")]
    PasswordRejected { code: &'static str, message: String },
    #[error("the session has ended or expired; sign in again")]
    SessionExpired,
    #[error("{message}")]
    WrongStage { message: String },
    #[error("the password must be changed before anything else")]
    PasswordChangeRequired,
    /// The decision point cannot answer now (a minimum revision it has not reached).
    #[error("{message}")]
    Unavailable { message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid(errors) => ServiceError::Invalid(errors),
            DomainError::IllegalTransition { from, to } => ServiceError::IllegalTransition { from, to },
            DomainError::SodViolation { rule_id, rule_name, left, right } => {
                ServiceError::SodViolation { rule_id: rule_id.to_string(), rule_name, left, right }
            }
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, id } => ServiceError::NotFound { kind, id },
            StoreError::Duplicate { kind, field, value } => ServiceError::Duplicate { kind, field, value },
            StoreError::VersionConflict { kind, id, expected, actual } => {
                ServiceError::VersionConflict { kind, id, expected, actual }
            }
            StoreError::InUse { kind, message, .. } => ServiceError::Conflict { kind, message },
            StoreError::Conflict { kind, message, .. } => ServiceError::Conflict { kind, message },
            StoreError::Invalid { field, message } => ServiceError::invalid(field, message),
            other => ServiceError::Internal(other.to_string()),
        }
    }
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
