//! What a policy enforcement point asks. Borrowed, so a caller that already holds the strings
//! (a parsed HTTP body) builds a request without copying them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use wardkey_domain::{Assurance, DeviceTrust};

/// Properties of the resource as the application sends them (`resource.properties`).
pub type Properties = BTreeMap<String, serde_json::Value>;

/// An empty property map, for requests that carry none.
pub static NO_PROPERTIES: Properties = BTreeMap::new();

/// The kinds of subject that can ask for access (groups only hold grants).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    User,
    ServiceAccount,
}

impl SubjectKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::ServiceAccount => "service_account",
        }
    }

    pub fn parse(s: &str) -> Option<SubjectKind> {
        match s {
            // AuthZEN renamed the person subject type from `user` to `identity` (2025); both mean a person.
            "user" | "identity" => Some(SubjectKind::User),
            "service_account" => Some(SubjectKind::ServiceAccount),
            _ => None,
        }
    }
}

/// Who asks: a user by UUID or username (case-insensitive), a service account by UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectRef<'a> {
    pub kind: SubjectKind,
    pub id: &'a str,
}

impl<'a> SubjectRef<'a> {
    pub fn user(id: &'a str) -> Self {
        SubjectRef { kind: SubjectKind::User, id }
    }
    pub fn service_account(id: &'a str) -> Self {
        SubjectRef { kind: SubjectKind::ServiceAccount, id }
    }
}

/// What is asked about: a resource type by name, optionally one resource (UUID, or its name
/// within the type, case-insensitive; an id Wardkey does not know is an unregistered
/// resource), and the properties the application sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResourceRef<'a> {
    pub type_name: &'a str,
    pub id: Option<&'a str>,
    pub properties: &'a Properties,
}

impl<'a> ResourceRef<'a> {
    /// The type as a whole (no resource id, no properties).
    pub fn of_type(type_name: &'a str) -> Self {
        ResourceRef { type_name, id: None, properties: &NO_PROPERTIES }
    }
    /// One resource of the type, without properties.
    pub fn new(type_name: &'a str, id: &'a str) -> Self {
        ResourceRef { type_name, id: Some(id), properties: &NO_PROPERTIES }
    }
    pub fn with_properties(self, properties: &'a Properties) -> Self {
        ResourceRef { properties, ..self }
    }
}

/// The circumstances of a request. `now` is the caller's clock: the index reads none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestContext {
    pub now: DateTime<Utc>,
    pub source_ip: Option<IpAddr>,
    pub assurance: Assurance,
    /// `None`: unknown (ranks as [`DeviceTrust::Unknown`]).
    pub device_trust: Option<DeviceTrust>,
}

impl RequestContext {
    /// A request at `now` with nothing else known: password assurance, no address, unknown device.
    pub fn at(now: DateTime<Utc>) -> Self {
        RequestContext { now, source_ip: None, assurance: Assurance::Password, device_trust: None }
    }
    pub fn with_ip(self, ip: IpAddr) -> Self {
        RequestContext { source_ip: Some(ip), ..self }
    }
    pub fn with_assurance(self, assurance: Assurance) -> Self {
        RequestContext { assurance, ..self }
    }
    pub fn with_device(self, device_trust: DeviceTrust) -> Self {
        RequestContext { device_trust: Some(device_trust), ..self }
    }
}

/// One access question.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request<'a> {
    pub subject: SubjectRef<'a>,
    pub action: &'a str,
    pub resource: ResourceRef<'a>,
    pub context: RequestContext,
}
