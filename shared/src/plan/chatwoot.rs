//! Planning for Chatwoot contacts on the Omnivibe host.

use crate::vendors::chatwoot::wire::ContactBody;

use super::SkipReason;

/// What to send Chatwoot for one contact change.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatwootPlan {
    /// Known contact id: `PUT /api/v1/accounts/{account_id}/contacts/{id}`.
    Update { contact_id: u64, body: ContactBody },
    /// Unknown id: search by `query` (e-mail, else phone, else identifier); found → PUT
    /// `body`; not found → POST `body`; a 422 uniqueness conflict on create is resolved by
    /// searching again and updating.
    Resolve { query: String, body: ContactBody },
    /// No request.
    Skip(SkipReason),
}
