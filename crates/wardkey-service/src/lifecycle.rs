//! The leaver path, shared by every source of a termination (an admin, SCIM `active: false`,
//! an HR roster, the contractor end-date job): one function, used inside the caller's write
//! job, so the status change and the loss of every access commit together or not at all.

use crate::directory::leave_all_groups;
use crate::event;
use crate::grants::revoke_all_in_tx as revoke_everything;
use crate::{Caller, Result};
use serde_json::json;
use wardkey_audit::Action;
use wardkey_domain::{Member, Subject, User, UserStatus};
use wardkey_store::WriteTx;

/// What a termination took away, for the caller's response or report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Revoked {
    pub sessions: usize,
    pub grants: usize,
    pub api_tokens: usize,
}

/// Disables `user` (if it is not already) and, in the same transaction, ends every session,
/// revokes every grant, removes every group membership and revokes every API token the user
/// owns, one audit event each. The caller has already loaded `user` in this `tx` and has
/// not written it yet; the returned user is the stored one (new version).
///
/// `why` is the reason recorded on every event (`"scim active=false"`, `"hr termination"`).
pub(crate) async fn terminate_in_tx(
    tx: &mut WriteTx,
    caller: &Caller,
    mut user: User,
    why: &str,
) -> Result<(User, Revoked)> {
    let id = user.id;
    if user.status != UserStatus::Disabled {
        let from = user.status;
        let expected = user.version;
        user.status = from.transition(UserStatus::Disabled)?;
        user.updated_at = tx.now();
        user = tx.update_user(&user, expected).await?;
        let mut e = event(caller, Action::UserStatus, id);
        e.reason = Some(why.to_owned());
        e.details = json!({ "from": from, "to": UserStatus::Disabled });
        tx.audit(e);
    }
    let revoked = revoke_access_in_tx(tx, caller, &user, why).await?;
    Ok((user, revoked))
}

/// Everything a disabled (or deleted) person must lose, without touching the user row.
pub(crate) async fn revoke_access_in_tx(tx: &mut WriteTx, caller: &Caller, user: &User, why: &str) -> Result<Revoked> {
    let id = user.id;
    let sessions = crate::authn::end_sessions(tx, id, "user_disabled", &caller.actor.principal(), &caller.meta).await?;
    let grants = revoke_everything(tx, caller, Subject::User(id), why).await?;
    // Group access goes too: a rehire is approved again, not restored.
    leave_all_groups(tx, caller, Member::User(id), why).await?;
    // Tokens the person owns (not merely created): they act for the person, so they end with them.
    let tokens =
        crate::tokens::revoke_owner_tokens_in_tx(tx, caller, &wardkey_domain::TokenOwner::User(id), why).await?;
    Ok(Revoked { sessions, grants, api_tokens: tokens.len() })
}
