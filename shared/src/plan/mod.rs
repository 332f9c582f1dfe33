//! Request planning: pure functions from a contact change and what is known of the vendor
//! side to the exact vendor requests (`../shared/vendor-docs/`). No I/O here, so every rule
//! the vendors impose (no empty PATCH, no create without e-mail or phone, at most 20 tags,
//! E.164 phones, no password fields) is enforced where it can be tested exhaustively.

pub mod channelio;
pub mod chatwoot;
pub mod hood;
pub mod omnivibe;

use serde_json::Value;

pub use channelio::ChannelPlan;
pub use chatwoot::ChatwootPlan;
pub use hood::{HoodLookup, HoodPlan, HoodProfileOp};
pub use omnivibe::OmnivibePlan;

/// Why a plan makes no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Every mapped field already has the value last applied: nothing to send.
    NothingChanged,
    /// The change maps to no field of this vendor.
    NoMappedFields,
    /// A deletion; the vendor pages document no delete endpoint, so the relay leaves the
    /// vendor record as it is (and says so in the delivery outcome).
    DeletionNotSupported,
}

impl SkipReason {
    /// Stable code for logs and delivery records.
    pub fn code(&self) -> &'static str {
        match self {
            SkipReason::NothingChanged => "nothing_changed",
            SkipReason::NoMappedFields => "no_mapped_fields",
            SkipReason::DeletionNotSupported => "deletion_not_supported",
        }
    }
}

/// One HTTP request exactly as the vendor will receive it (method, path, JSON body).
/// Used by golden tests, the sandbox vendors and dry runs; clients send the typed bodies.
#[derive(Clone, PartialEq)]
pub struct PlannedRequest {
    pub method: http::Method,
    /// Path and query, starting with `/`.
    pub path: String,
    pub body: Option<Value>,
}

impl std::fmt::Debug for PlannedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths may hold ids, bodies hold personal data: show only the shape.
        f.debug_struct("PlannedRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("has_body", &self.body.is_some())
            .finish()
    }
}

/// Why a change cannot be planned for a vendor. Messages name fields, never values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Hood creates a profile only with an e-mail or a mobile phone number.
    #[error("hood: cannot create a profile without an e-mail address or a mobile phone number")]
    HoodCreateNeedsEmailOrPhone,
    /// Channel.io needs a memberId (upsert) or a known userId (PATCH).
    #[error("channelio: no memberId from the mapping and no known Channel.io user id")]
    ChannelNeedsUserIdentity,
    /// Chatwoot needs something to search or create by.
    #[error("chatwoot: no e-mail, phone number or identifier to find or create the contact by")]
    ChatwootNeedsIdentity,
}
