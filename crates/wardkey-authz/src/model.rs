//! Records as the index keeps them: only what decisions and their reasons need, with names
//! case-folded once, networks and time zones parsed once, and references to other records as
//! dense indices.

use crate::MAX_ACTIONS;
use chrono::{DateTime, Datelike, Timelike, Utc};
use ipnet::IpNet;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use wardkey_domain::{
    Assurance, AttributeOp, AttributeRule, Conditions, Day, DeviceTrust, EmploymentType, ForbidRuleId, GrantId,
    GrantSource, GroupId, ResourceId, ResourceTypeId, RoleId, ServiceAccountId, UserId, UserStatus, parse_hhmm,
};

/// Lower-cases like the store's `*_key` columns (`str::to_lowercase`), borrowing when the
/// name is already lower case so that the common lookup allocates nothing. Per-character
/// folding equals `str::to_lowercase` whenever every character folds to itself (the one
/// context-dependent rule, final sigma, starts from an upper-case `Σ`).
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    let unchanged = s.chars().all(|c| {
        let mut l = c.to_lowercase();
        l.next() == Some(c) && l.next().is_none()
    });
    if unchanged { Cow::Borrowed(s) } else { Cow::Owned(s.to_lowercase()) }
}

pub(crate) fn key(s: &str) -> Arc<str> {
    Arc::from(fold(s).as_ref())
}

/// A member of a group, as an index into the users or the service accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Member {
    User(u32),
    Sa(u32),
}

/// Whoever holds a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Holder {
    User(u32),
    Sa(u32),
    Group(u32),
}

#[derive(Debug)]
pub(crate) struct UserRec {
    pub id: UserId,
    pub id_text: [u8; uuid::fmt::Hyphenated::LENGTH],
    pub username: Box<str>,
    pub key: Arc<str>,
    pub status: UserStatus,
    pub email: Option<Box<str>>,
    pub department: Option<Box<str>>,
    pub job_code: Option<Box<str>>,
    pub title: Option<Box<str>>,
    pub employment_type: Option<EmploymentType>,
}

/// A user or a service account, as a subject.
pub(crate) trait Principal {
    /// Whether its state lets it access anything at all.
    fn may_access(&self) -> bool;
}

impl Principal for UserRec {
    fn may_access(&self) -> bool {
        self.status.may_access()
    }
}

impl Principal for SaRec {
    fn may_access(&self) -> bool {
        self.active
    }
}

#[derive(Debug)]
pub(crate) struct SaRec {
    pub id: ServiceAccountId,
    pub id_text: [u8; uuid::fmt::Hyphenated::LENGTH],
    pub name: Box<str>,
    pub active: bool,
}

#[derive(Debug)]
pub(crate) struct GroupRec {
    pub id: GroupId,
    pub name: Box<str>,
    pub key: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct TypeRec {
    pub id: ResourceTypeId,
    pub name: Box<str>,
    pub tname: u32,
    /// Sorted and unique; an action's bit is its position here.
    pub actions: Box<[Box<str>]>,
}

impl TypeRec {
    /// The action's bit, if the type has the action (binary search: no allocation).
    pub fn action_bit(&self, action: &str) -> Option<u64> {
        let pos = self.actions.binary_search_by(|a| a.as_ref().cmp(action)).ok()?;
        (pos < MAX_ACTIONS).then(|| 1u64 << pos)
    }

    /// Bits of the given action names the type has; names it lacks are dropped.
    pub fn mask_of<'a>(&self, actions: impl IntoIterator<Item = &'a str>) -> u64 {
        actions.into_iter().filter_map(|a| self.action_bit(a)).fold(0, |m, b| m | b)
    }

    pub fn all_actions(&self) -> u64 {
        let n = self.actions.len().min(MAX_ACTIONS);
        if n == 64 { u64::MAX } else { (1u64 << n) - 1 }
    }
}

/// Sorted and unique, for binary search.
pub(crate) fn sorted_unique(actions: &[String]) -> Box<[Box<str>]> {
    let mut v: Vec<Box<str>> = actions.iter().map(|a| Box::from(a.as_str())).collect();
    v.sort();
    v.dedup();
    v.into_boxed_slice()
}

#[derive(Debug)]
pub(crate) struct ResRec {
    pub id: ResourceId,
    pub type_id: ResourceTypeId,
    pub name: Box<str>,
    pub key: Arc<str>,
    pub parent: Option<u32>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub(crate) struct PermRec {
    pub tname: u32,
    pub actions: Box<[Box<str>]>,
    /// The actions as bits of the type currently named `tname` (0 while there is none).
    pub mask: u64,
}

#[derive(Debug)]
pub(crate) struct RoleRec {
    pub id: RoleId,
    pub name: Box<str>,
    /// Sorted by `tname`, one entry per type name.
    pub perms: Box<[PermRec]>,
    pub conditions: Option<Arc<Cond>>,
}

impl RoleRec {
    pub fn mask_for(&self, tname: u32) -> u64 {
        match self.perms.binary_search_by_key(&tname, |p| p.tname) {
            Ok(i) => self.perms.get(i).map_or(0, |p| p.mask),
            Err(_) => 0,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct GrantRec {
    pub id: GrantId,
    pub holder: Holder,
    pub role: u32,
    pub scope: Option<u32>,
    pub source: GrantSource,
    pub starts_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub conditions: Option<Arc<Cond>>,
}

impl GrantRec {
    /// Started and not yet expired; `expires_at` itself counts as expired.
    pub fn effective_at(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && self.expires_at.is_none_or(|e| now < e)
    }
}

#[derive(Debug)]
pub(crate) struct ForbidRec {
    pub id: ForbidRuleId,
    pub name: Box<str>,
    /// Type-name slots it covers, sorted; `None`: all.
    pub types: Option<Box<[u32]>>,
    /// Sorted action names it covers; `None`: all.
    pub actions: Option<Box<[Box<str>]>>,
    pub when: When,
}

#[derive(Debug)]
pub(crate) enum When {
    Property { property: Box<str>, values: Box<[Box<str>]>, unless_group: Option<Arc<str>> },
    DeviceBelow(DeviceTrust),
    NetworkOutside(Box<[IpNet]>),
    Always,
}

/// Conditions of a role or a grant, parsed. `None` fields impose nothing.
#[derive(Debug)]
pub(crate) struct Cond {
    pub min_assurance: Option<Assurance>,
    /// `Some(empty)` when networks were required but none parsed: nothing matches.
    pub networks: Option<Box<[IpNet]>>,
    pub windows: Option<Box<[Window]>>,
    pub min_device: Option<DeviceTrust>,
    pub rules: Box<[Rule]>,
}

impl Cond {
    pub fn compile(c: &Conditions) -> Option<Arc<Cond>> {
        if c.is_empty() {
            return None;
        }
        let networks = (!c.networks.is_empty()).then(|| parse_networks(&c.networks));
        let windows =
            (!c.time_windows.is_empty()).then(|| c.time_windows.iter().map(Window::compile).collect::<Box<[_]>>());
        let rules =
            c.attribute_rules.iter().map(|r| Rule { attr: Attr::parse(&r.subject_attribute), source: r.clone() });
        Some(Arc::new(Cond {
            min_assurance: c.min_assurance,
            networks,
            windows,
            min_device: c.min_device_trust,
            rules: rules.collect(),
        }))
    }
}

pub(crate) fn parse_networks(networks: &[String]) -> Box<[IpNet]> {
    networks.iter().filter_map(|n| n.parse::<IpNet>().ok()).map(|n| n.trunc()).collect()
}

#[derive(Debug)]
pub(crate) struct Window {
    /// `None` when the zone, start or end did not parse: the window matches nothing.
    parsed: Option<(chrono_tz::Tz, u16, u16)>,
    /// Bit per weekday (Mon = bit 0); 0 = every day.
    days: u8,
}

fn day_bit(d: Day) -> u8 {
    1 << (d as u8)
}

impl Window {
    fn compile(w: &wardkey_domain::TimeWindow) -> Window {
        let parsed = match (w.time_zone.parse::<chrono_tz::Tz>(), parse_hhmm(&w.start), parse_hhmm(&w.end)) {
            (Ok(tz), Some(s), Some(e)) => u16::try_from(s).ok().zip(u16::try_from(e).ok()).map(|(s, e)| (tz, s, e)),
            _ => None,
        };
        Window { parsed, days: w.days.iter().fold(0, |m, d| m | day_bit(*d)) }
    }

    fn on(&self, d: chrono::Weekday) -> bool {
        self.days == 0 || self.days & day_bit(Day::from_chrono(d)) != 0
    }

    /// Wall-clock time in the window's zone, so a shift keeps its hours across DST changes.
    /// A window whose end is at or before its start spans midnight and belongs to the day it
    /// starts: its early-morning part is matched against the previous day.
    pub fn contains(&self, now: DateTime<Utc>) -> bool {
        let Some((tz, start, end)) = self.parsed else { return false };
        let local = now.with_timezone(&tz);
        let minute = u16::try_from(local.hour() * 60 + local.minute()).unwrap_or(u16::MAX);
        let day = local.weekday();
        if start < end {
            start <= minute && minute < end && self.on(day)
        } else {
            (minute >= start && self.on(day)) || (minute < end && self.on(day.pred()))
        }
    }
}

/// A subject attribute an attribute rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attr {
    Id,
    Username,
    /// Compared ignoring ASCII case (mail systems treat addresses so).
    Email,
    Department,
    JobCode,
    Title,
    EmploymentType,
    Groups,
    /// Not one Wardkey knows: the rule never holds.
    Unknown,
}

impl Attr {
    fn parse(s: &str) -> Attr {
        match s {
            "id" => Attr::Id,
            "username" => Attr::Username,
            "email" => Attr::Email,
            "department" => Attr::Department,
            "job_code" => Attr::JobCode,
            "title" => Attr::Title,
            "employment_type" => Attr::EmploymentType,
            "groups" => Attr::Groups,
            _ => Attr::Unknown,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Rule {
    pub source: AttributeRule,
    pub attr: Attr,
}

impl Rule {
    pub fn op(&self) -> AttributeOp {
        self.source.op
    }
}

pub(crate) fn uuid_text(id: &uuid::Uuid) -> [u8; uuid::fmt::Hyphenated::LENGTH] {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut buf);
    buf
}
