//! What one delivery amounted to: the 202 body senders see, and what the ingest metrics
//! count.

use serde::Serialize;

/// What a delivery amounted to; serialised as the 202 body. Lists and counts that are
/// empty are left out, so a plain delivery reads `{"accepted": 1, "duplicates": 0}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Accepted {
    /// Events claimed and enqueued now.
    pub accepted: usize,
    /// Events accepted earlier: a sender's retry, or a copy delivered twice.
    pub duplicates: usize,
    /// Of the duplicates, those enqueued again: their first claim was never confirmed (see
    /// `ingress::ingest`), and the worker recognises the second copy. Not in the 202 body.
    #[serde(skip)]
    pub enqueued_again: usize,
    /// Events whose id was used before with a different meaning (not enqueued).
    #[serde(skip_serializing_if = "is_zero")]
    pub conflicts: usize,
    /// Events combined into another event's change: the same contact, changed by several
    /// events of one delivery, is one change (HubSpot sends one event per property).
    #[serde(skip_serializing_if = "is_zero")]
    pub combined: usize,
    /// Events of kinds the source does not map (nothing to do).
    #[serde(skip_serializing_if = "is_zero")]
    pub ignored: usize,
    /// Fields left out of accepted events because their values did not normalise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<EventWarning>,
    /// Events that cannot be synced (no usable identifier, unreadable event id).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RefusedEvent>,
    /// What the identity step did (not in the 202 body): persons created, persons merged
    /// into an older one, and the store calls it made.
    #[serde(skip)]
    pub identity: IdentityCounts,
}

/// Counts of the identity step of one delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IdentityCounts {
    pub created: usize,
    pub merged: usize,
    pub calls: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One field dropped from one event: `{"event": "<id>", "field": "phone", "code": "phone_invalid"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventWarning {
    pub event: String,
    pub field: String,
    pub code: &'static str,
}

/// One event of a delivery that was refused, with its stable code and a message naming
/// fields and expressions (never values).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusedEvent {
    pub event: String,
    pub code: &'static str,
    pub message: String,
}
