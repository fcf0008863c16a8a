//! The one step-up rule: a sensitive change made by a person needs a second factor proved
//! within the step-up window of their session.
//!
//! Every path that makes a sensitive change asks [`require_step_up`] (or
//! [`Services::require_step_up_for`]) with the [`SensitiveChange`] it is about to make, so the
//! rule — and any future tightening of it — lives in one place:
//!
//! - granting a privileged or admin-scoped role (`POST /api/v1/grants`);
//! - editing a role people hold so that it becomes privileged or gains Wardkey API scopes;
//! - adding someone to a group that holds such a role;
//! - declaring break-glass;
//! - creating an admin-scoped API token from a session.
//!
//! Callers with an API token (or the local operator) have no session and no interactive
//! second factor to prove: the token's scope is their control, as before.

use crate::{Caller, Result, ServiceError, Services};
use chrono::{DateTime, Utc};
use wardkey_domain::{Role, Scope};

/// What a caller is about to do that needs a fresh second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensitiveChange {
    /// Granting a privileged or admin-scoped role.
    GrantSensitiveRole,
    /// Editing a held role so that it becomes privileged or gains API scopes.
    RoleBecomesSensitive,
    /// Adding a member to a group that holds a privileged or admin-scoped role.
    JoinGroupWithSensitiveRole,
    /// Declaring emergency access.
    BreakGlass,
    /// Creating an API token carrying the `admin` scope.
    AdminToken,
    /// Managing one's own factors and recovery codes.
    OwnFactors,
}

impl SensitiveChange {
    pub fn as_str(&self) -> &'static str {
        match self {
            SensitiveChange::GrantSensitiveRole => "grant_sensitive_role",
            SensitiveChange::RoleBecomesSensitive => "role_becomes_sensitive",
            SensitiveChange::JoinGroupWithSensitiveRole => "join_group_with_sensitive_role",
            SensitiveChange::BreakGlass => "break_glass",
            SensitiveChange::AdminToken => "admin_token",
            SensitiveChange::OwnFactors => "own_factors",
        }
    }
}

/// A role whose holders can do harm beyond their own work: marked privileged, or conferring
/// Wardkey API scopes (administering Wardkey itself).
pub fn is_sensitive_role(role: &Role) -> bool {
    role.privileged || !role.session_policy.scopes.is_empty()
}

/// Whether an edit turned `before` into a role more sensitive than it was: newly privileged,
/// or conferring an API scope it did not confer before.
pub fn became_more_sensitive(before: &Role, after: &Role) -> bool {
    (after.privileged && !before.privileged)
        || after.session_policy.scopes.iter().any(|s| !before.session_policy.scopes.contains(s))
}

/// The rule. `now` is the clock of the caller's transaction (or the service clock).
///
/// A person (session caller) passes when their session proved a second factor less than the
/// step-up window ago; otherwise [`ServiceError::StepUpRequired`] (problem type
/// `step-up-required`). Callers without a session (API tokens, the local operator) pass.
pub fn require_step_up(caller: &Caller, now: DateTime<Utc>, _change: SensitiveChange) -> Result<()> {
    match &caller.session {
        None => Ok(()),
        Some(s) if s.fresh_mfa(now) => Ok(()),
        Some(_) => Err(ServiceError::StepUpRequired),
    }
}

/// [`require_step_up`] for a new API token: only tokens carrying the `admin` scope are
/// sensitive.
pub fn require_step_up_for_token(caller: &Caller, now: DateTime<Utc>, scopes: &[Scope]) -> Result<()> {
    if scopes.contains(&Scope::Admin) { require_step_up(caller, now, SensitiveChange::AdminToken) } else { Ok(()) }
}

impl Services {
    /// [`require_step_up`] at the service clock, for checks made before a write job starts.
    pub fn require_step_up_for(&self, caller: &Caller, change: SensitiveChange) -> Result<()> {
        require_step_up(caller, self.clock().now(), change)
    }

    /// [`require_step_up_for_token`] at the service clock (the token-creation path).
    pub fn require_step_up_for_token(&self, caller: &Caller, scopes: &[Scope]) -> Result<()> {
        require_step_up_for_token(caller, self.clock().now(), scopes)
    }
}
