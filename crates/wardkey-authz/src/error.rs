/// Why a search could not be answered. (Decisions never fail: they deny with a reason.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthzError {
    #[error("unknown subject")]
    UnknownSubject,
    #[error("unknown resource type")]
    UnknownResourceType,
    #[error("unknown action for this resource type")]
    UnknownAction,
}

impl AuthzError {
    /// The same code a decision would carry as its reason.
    pub fn code(&self) -> &'static str {
        match self {
            AuthzError::UnknownSubject => "unknown_subject",
            AuthzError::UnknownResourceType => "unknown_resource_type",
            AuthzError::UnknownAction => "unknown_action",
        }
    }
}
