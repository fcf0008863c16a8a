use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// Kind of object, as used in audit targets (`user:<uuid>`).
            pub const KIND: &'static str = $prefix;

            /// A fresh UUIDv7: time-ordered, never reused.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
            /// `kind:uuid`, the form audit events name their targets in.
            pub fn target(&self) -> String {
                format!("{}:{}", $prefix, self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(/// A person's account. Permanent: never reused, not even after deletion.
    UserId, "user");
id_type!(GroupId, "group");
id_type!(/// A non-human account, always owned by a human user.
    ServiceAccountId, "service_account");
id_type!(ResourceTypeId, "resource_type");
id_type!(ResourceId, "resource");
id_type!(RoleId, "role");
id_type!(RoleTemplateId, "role_template");
id_type!(SodRuleId, "sod_rule");
id_type!(GrantId, "grant");
id_type!(ApiTokenId, "api_token");
id_type!(/// A sign-in session's public handle (listing, ending). Never the cookie secret.
    SessionId, "session");
id_type!(/// An enrolled second factor (a TOTP app or a passkey).
    FactorId, "factor");
id_type!(/// A rule that denies whatever grants allow.
    ForbidRuleId, "forbid_rule");
