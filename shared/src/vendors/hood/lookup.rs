//! Coalesced profile lookups: Hood has no upsert, so every new contact costs lookups
//! before its create. Deliveries of one batch run concurrently; a lookup waits a moment
//! for the others of its kind and they share one list call
//! (`GET /v1/hood/profiles?email=in:a,b,c`, the `in` operator of Hood's filter syntax),
//! so ten new contacts cost one e-mail lookup, one phone lookup and ten creates instead of
//! thirty calls.
//!
//! The call is made (in `sync.rs`, through the limiter gate) by the first delivery that
//! asked (its `Run` counts it); the others wait for its answer. If it fails, every waiter gets the
//! error (the deliveries retry as they would have); if the first delivery is cancelled
//! before answering, the others look up on their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::wire::Profile;
use crate::vendors::error::VendorError;

/// How long a lookup waits for others to join its call.
pub const WINDOW: Duration = Duration::from_millis(25);

/// Most values in one `in` filter (keeps the URL well under common 8 KB limits).
pub const MAX_VALUES: usize = 50;

/// Which profile field a lookup searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Email,
    Phone,
}

pub(super) type Answer = Option<Result<Arc<Vec<Profile>>, VendorError>>;

pub(super) struct Batch {
    pub(super) values: Vec<String>,
    pub(super) answer: watch::Sender<Answer>,
}

/// The lookups waiting to be sent, per field.
#[derive(Default)]
pub struct Lookups {
    open: Mutex<HashMap<Field, Batch>>,
}

pub(super) enum Role {
    /// Sends the call for the batch after the window.
    Leader,
    /// Waits for the leader's answer.
    Follower(watch::Receiver<Answer>),
}

impl Lookups {
    pub(super) fn join(&self, field: Field, value: &str) -> Role {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(batch) = open.get_mut(&field)
            && batch.values.len() < MAX_VALUES
        {
            if !batch.values.iter().any(|v| v == value) {
                batch.values.push(value.to_string());
            }
            return Role::Follower(batch.answer.subscribe());
        }
        let (answer, _) = watch::channel(None);
        // A full batch is being sent by its leader: this one starts the next.
        open.insert(
            field,
            Batch {
                values: vec![value.to_string()],
                answer,
            },
        );
        Role::Leader
    }

    pub(super) fn take(&self, field: Field) -> Option<Batch> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&field)
    }
}
