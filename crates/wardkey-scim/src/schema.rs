//! Attribute metadata of the resources Wardkey serves (RFC 7643 §4, §8.7): the core User
//! schema, the enterprise extension and the core Group schema, as static tables. They drive
//! key normalisation, value checks, PATCH paths, filter translation and the `/Schemas`
//! document, so those cannot disagree with each other.

use crate::ast::AttrPath;
use serde_json::{Value, json};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const SEARCH_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
pub const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
pub const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub const SP_CONFIG_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// RFC 7643 §2.3 data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "string",
            AttrType::Boolean => "boolean",
            AttrType::Decimal => "decimal",
            AttrType::Integer => "integer",
            AttrType::DateTime => "dateTime",
            AttrType::Binary => "binary",
            AttrType::Reference => "reference",
            AttrType::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

impl Mutability {
    pub fn as_str(self) -> &'static str {
        match self {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
            Mutability::Immutable => "immutable",
            Mutability::WriteOnly => "writeOnly",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    Always,
    Default,
    Never,
}

/// One attribute (or sub-attribute) definition.
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: AttrType,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub unique: bool,
    pub sub: &'static [Attr],
    pub description: &'static str,
}

const fn s(name: &'static str, description: &'static str) -> Attr {
    Attr {
        name,
        ty: AttrType::String,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        unique: false,
        sub: &[],
        description,
    }
}

const fn typed(name: &'static str, ty: AttrType, description: &'static str) -> Attr {
    Attr { ty, ..s(name, description) }
}

const fn multi(name: &'static str, sub: &'static [Attr], description: &'static str) -> Attr {
    Attr { ty: AttrType::Complex, multi: true, sub, ..s(name, description) }
}

/// Sub-attributes of the usual multi-valued attributes (emails, phoneNumbers, ...).
const MV_SUBS: &[Attr] = &[
    s("value", "The value."),
    s("display", "A human-readable name."),
    s("type", "A label such as work, home or other."),
    typed("primary", AttrType::Boolean, "The primary value of the attribute."),
];

const ADDRESS_SUBS: &[Attr] = &[
    s("formatted", "The full mailing address."),
    s("streetAddress", "Street address."),
    s("locality", "City or locality."),
    s("region", "State or region."),
    s("postalCode", "Zip or postal code."),
    s("country", "Country."),
    s("type", "work, home or other."),
    typed("primary", AttrType::Boolean, "The primary address."),
];

const NAME_SUBS: &[Attr] = &[
    s("formatted", "The full name."),
    s("familyName", "Family name."),
    s("givenName", "Given name."),
    s("middleName", "Middle name(s)."),
    s("honorificPrefix", "Honorific prefix."),
    s("honorificSuffix", "Honorific suffix."),
];

const GROUP_REF_SUBS: &[Attr] = &[
    Attr { mutability: Mutability::ReadOnly, ..s("value", "Id of the group.") },
    Attr { mutability: Mutability::ReadOnly, ..typed("$ref", AttrType::Reference, "URI of the group.") },
    Attr { mutability: Mutability::ReadOnly, ..s("display", "Name of the group.") },
    Attr { mutability: Mutability::ReadOnly, ..s("type", "direct or indirect.") },
];

const MANAGER_SUBS: &[Attr] = &[
    Attr { case_exact: true, ..s("value", "Id of the manager (a User of this service provider).") },
    typed("$ref", AttrType::Reference, "URI of the manager."),
    Attr { mutability: Mutability::ReadOnly, ..s("displayName", "Name of the manager.") },
];

const MEMBER_SUBS: &[Attr] = &[
    Attr { case_exact: true, mutability: Mutability::Immutable, ..s("value", "Id of the member (a User).") },
    Attr { mutability: Mutability::Immutable, ..typed("$ref", AttrType::Reference, "URI of the member.") },
    Attr { mutability: Mutability::ReadOnly, ..s("display", "Name of the member.") },
    Attr { mutability: Mutability::Immutable, ..s("type", "User.") },
];

const META_SUBS: &[Attr] = &[
    s("resourceType", "User or Group."),
    typed("created", AttrType::DateTime, "When the resource was created."),
    typed("lastModified", AttrType::DateTime, "When the resource was last changed."),
    typed("location", AttrType::Reference, "URI of the resource."),
    Attr { case_exact: true, ..s("version", "Weak ETag of the resource.") },
];

/// Attributes every resource has (RFC 7643 §3.1).
pub const COMMON: &[Attr] = &[
    Attr {
        case_exact: true,
        mutability: Mutability::ReadOnly,
        returned: Returned::Always,
        unique: true,
        ..s("id", "Unique id assigned by Wardkey.")
    },
    Attr { case_exact: true, ..s("externalId", "Id assigned by the provisioning client.") },
    Attr { ty: AttrType::Complex, mutability: Mutability::ReadOnly, sub: META_SUBS, ..s("meta", "Resource metadata.") },
];

pub const USER_ATTRS: &[Attr] = &[
    Attr { required: true, unique: true, ..s("userName", "Unique sign-in name (case-insensitive).") },
    Attr { ty: AttrType::Complex, sub: NAME_SUBS, ..s("name", "The components of the name.") },
    s("displayName", "Name displayed to end users."),
    s("nickName", "Casual name."),
    typed("profileUrl", AttrType::Reference, "URI of an online profile."),
    s("title", "Job title."),
    s(
        "userType",
        "Relationship to the organisation: employee, contractor, vendor, student or volunteer map to Wardkey's employment types.",
    ),
    s("preferredLanguage", "Preferred language."),
    s("locale", "Locale."),
    s("timezone", "IANA time zone."),
    typed(
        "active",
        AttrType::Boolean,
        "Administrative status. false terminates the user (disables, revokes every session, grant, membership and API token).",
    ),
    Attr {
        mutability: Mutability::WriteOnly,
        returned: Returned::Never,
        ..s("password", "Not stored: Wardkey manages its own credentials; a value sent here is ignored.")
    },
    multi("emails", MV_SUBS, "Email addresses."),
    multi("phoneNumbers", MV_SUBS, "Phone numbers."),
    multi("ims", MV_SUBS, "Instant messaging addresses."),
    multi("photos", MV_SUBS, "URIs of photos."),
    multi("addresses", ADDRESS_SUBS, "Physical mailing addresses."),
    Attr {
        mutability: Mutability::ReadOnly,
        ..multi("groups", GROUP_REF_SUBS, "Groups the user belongs to (read-only; change Group members instead).")
    },
    multi("entitlements", MV_SUBS, "Entitlements."),
    multi("roles", MV_SUBS, "Roles (kept as sent; Wardkey roles are granted through its own model)."),
    multi("x509Certificates", MV_SUBS, "Certificates."),
];

pub const ENTERPRISE_ATTRS: &[Attr] = &[
    s("employeeNumber", "Employee number (Wardkey HR employee id)."),
    s("costCenter", "Cost center."),
    s("organization", "Organization."),
    s("division", "Division."),
    s("department", "Department (Wardkey HR department)."),
    Attr { ty: AttrType::Complex, sub: MANAGER_SUBS, ..s("manager", "The user's manager (Wardkey HR manager).") },
];

pub const GROUP_ATTRS: &[Attr] = &[
    Attr { required: true, ..s("displayName", "Name of the group.") },
    multi("members", MEMBER_SUBS, "Members (Users)."),
];

/// The two kinds of resource served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }
    pub fn core_schema(self) -> &'static str {
        match self {
            ResourceKind::User => USER_SCHEMA,
            ResourceKind::Group => GROUP_SCHEMA,
        }
    }
    pub fn core_attrs(self) -> &'static [Attr] {
        match self {
            ResourceKind::User => USER_ATTRS,
            ResourceKind::Group => GROUP_ATTRS,
        }
    }
    /// The extension schemas the resource type allows.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ResourceKind::User => &[ENTERPRISE_SCHEMA],
            ResourceKind::Group => &[],
        }
    }
    pub fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "/Users",
            ResourceKind::Group => "/Groups",
        }
    }
}

/// Which schema an attribute belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Common,
    Core,
    Enterprise,
}

/// An attribute path resolved against a resource type's schemas.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub scope: Scope,
    pub attr: &'static Attr,
    pub sub: Option<&'static Attr>,
}

impl Resolved {
    /// Lower-cased `attr[.sub]` (without schema), for matching storage mappings.
    pub fn key(&self) -> String {
        match self.sub {
            Some(sub) => format!("{}.{}", self.attr.name.to_ascii_lowercase(), sub.name.to_ascii_lowercase()),
            None => self.attr.name.to_ascii_lowercase(),
        }
    }
    /// The attribute that is compared: the sub-attribute, or the attribute itself.
    pub fn leaf(&self) -> &'static Attr {
        self.sub.unwrap_or(self.attr)
    }
}

pub fn find<'a>(attrs: &'a [Attr], name: &str) -> Option<&'a Attr> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// Resolves a (possibly URN-qualified) path. Unqualified names are looked up in the common
/// attributes, the core schema, then the resource's extensions.
pub fn resolve(kind: ResourceKind, path: &AttrPath) -> Option<Resolved> {
    let (scope, attr) = match &path.schema {
        Some(urn) if urn.as_str().eq_ignore_ascii_case(kind.core_schema()) => match find(COMMON, path.attr.as_str()) {
            Some(a) => (Scope::Common, a),
            None => (Scope::Core, find(kind.core_attrs(), path.attr.as_str())?),
        },
        Some(urn) if kind == ResourceKind::User && urn.as_str().eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
            (Scope::Enterprise, find(ENTERPRISE_ATTRS, path.attr.as_str())?)
        }
        Some(_) => return None,
        None => {
            if let Some(a) = find(COMMON, path.attr.as_str()) {
                (Scope::Common, a)
            } else if let Some(a) = find(kind.core_attrs(), path.attr.as_str()) {
                (Scope::Core, a)
            } else if kind == ResourceKind::User {
                (Scope::Enterprise, find(ENTERPRISE_ATTRS, path.attr.as_str())?)
            } else {
                return None;
            }
        }
    };
    let sub = match &path.sub_attr {
        None => None,
        Some(name) => Some(find(attr.sub, name.as_str())?),
    };
    Some(Resolved { scope, attr, sub })
}

fn attr_json(a: &Attr) -> Value {
    let mut v = json!({
        "name": a.name,
        "type": a.ty.as_str(),
        "multiValued": a.multi,
        "description": a.description,
        "required": a.required,
        "caseExact": a.case_exact,
        "mutability": a.mutability.as_str(),
        "returned": match a.returned { Returned::Always => "always", Returned::Default => "default", Returned::Never => "never" },
        "uniqueness": if a.unique { "server" } else { "none" },
    });
    if a.ty == AttrType::Complex {
        v["subAttributes"] = Value::Array(a.sub.iter().map(attr_json).collect());
    }
    if a.ty == AttrType::Reference {
        v["referenceTypes"] = json!(["external", "uri"]);
    }
    v
}

fn schema_json(id: &str, name: &str, description: &str, attrs: &[Attr], base: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": id,
        "name": name,
        "description": description,
        "attributes": attrs.iter().filter(|a| a.name != "meta" && a.name != "id").map(attr_json).collect::<Vec<_>>(),
        "meta": { "resourceType": "Schema", "location": format!("{base}/Schemas/{id}") },
    })
}

/// The `/Schemas` resources.
pub fn schemas(base: &str) -> Vec<Value> {
    vec![
        schema_json(USER_SCHEMA, "User", "User Account", USER_ATTRS, base),
        schema_json(ENTERPRISE_SCHEMA, "EnterpriseUser", "Enterprise User", ENTERPRISE_ATTRS, base),
        schema_json(GROUP_SCHEMA, "Group", "Group", GROUP_ATTRS, base),
    ]
}

/// The `/ResourceTypes` resources.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "User",
            "name": "User",
            "endpoint": "/Users",
            "description": "User Account",
            "schema": USER_SCHEMA,
            "schemaExtensions": [{ "schema": ENTERPRISE_SCHEMA, "required": false }],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/User") },
        }),
        json!({
            "schemas": [RESOURCE_TYPE_SCHEMA],
            "id": "Group",
            "name": "Group",
            "endpoint": "/Groups",
            "description": "Group",
            "schema": GROUP_SCHEMA,
            "schemaExtensions": [],
            "meta": { "resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/Group") },
        }),
    ]
}
