//! Wardkey's authorization decision index: every directory and access-model record the
//! decision point needs, compiled into an in-memory structure that answers "may this subject
//! do this action on this resource, now?" and the search questions built on it ("who has
//! access", "what can this subject reach").
//!
//! The crate is pure: no I/O, no database, no clock. The request carries `now`, the source
//! address, the authentication assurance and the device trust; the store feeds records in
//! through [`Index::build`] at start-up and [`Index::apply`] after each committed write.
//!
//! # Semantics (deny by default)
//!
//! 1. An unknown subject is denied (`unknown_subject`); a subject that is not active is denied
//!    (`subject_not_active`) whatever it holds.
//! 2. An unknown resource type (`unknown_resource_type`) or an action the type does not list
//!    (`unknown_action`) is denied. A resource id Wardkey does not know is an *unregistered*
//!    resource: only grants without a resource scope can reach it.
//! 3. Any applying forbid rule denies (`forbidden_by_rule`), over every grant, break-glass
//!    included.
//! 4. Candidate grants: held directly or through a group, not revoked, started, not expired
//!    (`expires_at` itself is already expired), role permits the type and action, scope is the
//!    resource or one of its ancestors (at most [`MAX_RESOURCE_DEPTH`] levels up). A candidate is satisfied when
//!    the role's and the grant's conditions all hold.
//! 5. A satisfied candidate allows; the reasons list every satisfied grant. Break-glass is
//!    flagged (with a `record_break_glass_use` obligation) only when no other grant allows.
//! 6. Otherwise the reasons say which condition failed for each candidate (`no_grant` when
//!    there was none), with a step-up hint when more assurance alone would have allowed.
//!
//! # Details the contract leaves open, decided here
//!
//! - Usernames, group names, resource type names and resource names are matched
//!   case-insensitively (lower-cased like the store's `*_key` columns); action names, forbid
//!   rule values and attribute comparisons (`equals`) are exact. A service account is named
//!   by its id only.
//! - A name that matches more than one live record (which the store refuses, but the index
//!   does not assume) resolves to nothing: an unknown subject or type, an unregistered resource.
//! - A registered resource of another type than the request names is unregistered for the
//!   request. Resource names are unique among siblings, not within a type; an ambiguous name is
//!   unregistered too (only unscoped grants can reach it, which reach every resource anyway).
//! - Conditions and forbid rules see a registered resource's stored attributes and the
//!   request's properties, the stored attribute winning where both name the same key (Wardkey's
//!   record is authoritative; a PEP cannot re-label a registered record). Evaluation and every
//!   search read them the same way, so a search answer is what the evaluations it summarises
//!   would say. An unregistered resource has only the request's properties.
//! - Search answers name subjects and resources the way a PEP names them in an evaluation: a
//!   user by username, a resource by name within its type, unless that name does not resolve
//!   to this very record (a case-insensitive collision), when the UUID is given instead; a
//!   service account by its id.
//! - Service accounts have the subject attributes `id` and `groups`; the HR attributes and
//!   `username` are missing for them, so rules on those fail.
//! - Networks and time zones are validated when saved; one that still fails to parse here
//!   matches nothing (a condition on it fails, a `network_outside` rule applies).
//! - The resource tree is walked through live records only: a removed parent ends the chain.
//!
//! # Concurrency
//!
//! Readers load the current [`Snapshot`] through an `ArcSwap` and never wait for a writer;
//! writers are serialised by a mutex that only they take, derive the next snapshot from the
//! current one with copy-on-write structures, and publish it with one atomic store. What a
//! decision reads (record slots, id → slot maps, a subject's groups) is two levels deep
//! (`flat.rs`): a writer copies the top level once per batch and each 64-slot chunk or
//! 1/128 shard it touches; the rest (name indices, member and grant sets) is `imbl`.
//! Once [`Index::apply`] returns, every evaluation that starts afterwards, on any thread, sees
//! the change.
//!
//! # Layout
//!
//! Ids are interned to dense `u32` slots per kind; a record refers to others by slot, so a
//! batch may bring records in any order and a reference to something absent is inert. Each
//! user, service account and group keeps the set of grants it holds, and a copy of those grant
//! records side by side (`held`), which is what a decision walks; a member keeps the set of
//! groups it is in, and group grants stay on the group (a membership change touches two sets,
//! whatever the group holds). A role's permission on a type becomes a bitmask over that type's
//! sorted actions, recomputed when the type changes. Resources keep a parent link in their
//! slot (for the ancestor walk, which then reads no record) and a children set (for "what
//! can this subject reach"). Type names map to
//! the roles that name them, and roles to their grants (for "who has access").
//! [`Snapshot::verify`] checks all of these derived structures against the records.
//!
//! # Size
//!
//! Measured in release mode on the 2-core build machine with the `scale` test at full size
//! (`WARDKEY_AUTHZ_SCALE=20`: 100k users in 1k groups with 300k memberships, 1k roles, 20k
//! resources, 300k grants), with the two-level layout: build 1.0 s; resident memory 227 MiB
//! after the build (an upper bound for the index, the freed input records included; peak 321
//! MiB while both existed); `check` 2.7 µs and `evaluate` 3.5 µs per request on a cold, random
//! spread of requests (about 20 grants visited each; 5 and 7 µs with `imbl` throughout); "who
//! has access" to one dataset 33 ms for about 4,900 subjects. One grant upserted and published
//! takes 158 µs (14 µs with `imbl` throughout): each batch copies the top-level arrays, one
//! pointer per 64 slots (4,700 for 300k grants), and each chunk and shard it touches, and the
//! old snapshot's copies are freed when its last reader lets go. That is the price of the
//! shallower read path, and still small beside the database commit every change waits for.

mod decision;
mod error;
mod eval;
mod flat;
mod index;
mod model;
mod request;
mod search;
mod snapshot;
mod update;
mod verify;

pub use decision::{ConditionSource, Decision, FailedCondition, GrantPath, Reason, Via};
pub use error::AuthzError;
pub use index::Index;
pub use request::{NO_PROPERTIES, Properties, Request, RequestContext, ResourceRef, SubjectKind, SubjectRef};
pub use search::{AccessTarget, ActionAccess, Found, Page, ResourceAccess, SubjectAccess};
pub use snapshot::{Snapshot, Stats};
pub use update::{Change, Records};

/// How many ancestors above a resource a scoped grant is looked for (the resource itself is
/// checked too): the domain's one limit, which the store enforces when a resource is created
/// or moved, so a grant on any ancestor the store holds applies. Bounds the walk whatever the
/// data.
pub use wardkey_domain::MAX_RESOURCE_DEPTH;

/// How many actions a resource type can have (the domain validates 64); actions past this are
/// unknown to the index.
pub const MAX_ACTIONS: usize = 64;
