use crate::{ApiTokenId, ServiceAccountId, UserId};
use serde::{Deserialize, Serialize};

/// Who performed an action. Every audit event names one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    /// A caller authenticated by an API token.
    Token { token_id: ApiTokenId, name: String },
    /// A signed-in person.
    User { user_id: UserId },
    /// A service account acting for itself.
    ServiceAccount { service_account_id: ServiceAccountId },
    /// Someone with shell access to the host acting on the store directly (the CLI).
    Operator { os_user: String },
    /// Wardkey itself (background jobs, bootstrap).
    System { component: String },
    /// A request that could not be authenticated.
    Anonymous,
}

impl Actor {
    /// Stable one-line form used in audit events and filters (`token:<id>`, `operator:alice`).
    pub fn principal(&self) -> String {
        match self {
            Actor::Token { token_id, .. } => format!("token:{token_id}"),
            Actor::User { user_id } => format!("user:{user_id}"),
            Actor::ServiceAccount { service_account_id } => format!("service_account:{service_account_id}"),
            Actor::Operator { os_user } => format!("operator:{os_user}"),
            Actor::System { component } => format!("system:{component}"),
            Actor::Anonymous => "anonymous".to_owned(),
        }
    }
}

/// API token scopes. `Admin` reaches everything; the others reach one surface each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "admin")]
    Admin,
    #[serde(rename = "scim")]
    Scim,
    #[serde(rename = "pdp")]
    Pdp,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Admin, Scope::Scim, Scope::Pdp, Scope::AuditRead];

    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Scim => "scim",
            Scope::Pdp => "pdp",
            Scope::AuditRead => "audit:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// Whether holding `self` satisfies a requirement for `needed`.
    pub fn satisfies(&self, needed: Scope) -> bool {
        *self == needed || *self == Scope::Admin
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
