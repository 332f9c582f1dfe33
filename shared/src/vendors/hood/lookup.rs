//! Coalesced profile lookups: Hood has no upsert, so every new contact costs lookups
//! before its create. Deliveries of one batch run concurrently; a lookup waits a moment
//! for the others of its kind and they share one list call
//! (`GET /v1/hood/profiles?email=in:a,b,c`, the `in` operator of Hood's filter syntax),
//! so ten new contacts cost one e-mail lookup, one phone lookup and ten creates instead of
//! thirty calls.
//!
//! The call is made, through the limiter gate, by the first delivery that asked (its
//! `Run` counts it); the others wait for its answer. If it fails, every waiter gets the
//! error (the deliveries retry as they would have); if the first delivery is cancelled
//! before answering, the others look up on their own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::client::{HoodClient, ProfileFilter};
use super::wire::Profile;
use crate::vendors::error::VendorError;
use crate::vendors::sync::Run;

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

type Answer = Option<Result<Arc<Vec<Profile>>, VendorError>>;

struct Batch {
    values: Vec<String>,
    answer: watch::Sender<Answer>,
}

/// The lookups waiting to be sent, per field.
#[derive(Default)]
pub struct Lookups {
    open: Mutex<HashMap<Field, Batch>>,
}

enum Role {
    /// Sends the call for the batch after the window.
    Leader,
    /// Waits for the leader's answer.
    Follower(watch::Receiver<Answer>),
}

impl Lookups {
    fn join(&self, field: Field, value: &str) -> Role {
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

    fn take(&self, field: Field) -> Option<Batch> {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&field)
    }
}

impl HoodClient {
    /// The profiles whose `field` is one of the values asked for together with `value`
    /// (at least those matching `value`), in one list call shared by concurrent lookups.
    pub(super) async fn lookup(
        &self,
        run: &mut Run<'_>,
        field: Field,
        value: &str,
    ) -> Result<(Arc<Vec<Profile>>, bool), VendorError> {
        let value_fits = !value.contains(',');
        if !value_fits {
            // A value with a comma cannot be one of an `in` list: look it up alone.
            return Ok((Arc::new(self.list_one(run, field, value).await?), false));
        }
        match self.lookups.join(field, value) {
            Role::Leader => {
                tokio::time::sleep(WINDOW).await;
                let Some(batch) = self.lookups.take(field) else {
                    // Cannot happen (only the leader takes); look up alone.
                    return Ok((Arc::new(self.list_one(run, field, value).await?), false));
                };
                let shared = batch.values.len() > 1;
                let result = if shared {
                    self.list_many(run, field, &batch.values).await
                } else {
                    self.list_one(run, field, value).await
                }
                .map(Arc::new);
                // Followers may have gone (a deadline); nobody listening is fine.
                let _ = batch.answer.send(Some(result.clone()));
                result.map(|found| (found, shared))
            }
            Role::Follower(mut rx) => {
                let answered = rx.wait_for(Option::is_some).await.ok().and_then(|a| a.clone());
                match answered {
                    Some(result) => result.map(|found| (found, true)),
                    // The leader was cancelled before answering.
                    None => Ok((Arc::new(self.list_one(run, field, value).await?), false)),
                }
            }
        }
    }

    async fn list_one(
        &self,
        run: &mut Run<'_>,
        field: Field,
        value: &str,
    ) -> Result<Vec<Profile>, VendorError> {
        let filter = match field {
            Field::Email => ProfileFilter::Email(value),
            Field::Phone => ProfileFilter::MobilePhoneNumber(value),
        };
        run.step(self.list_profiles(filter)).await
    }

    async fn list_many(
        &self,
        run: &mut Run<'_>,
        field: Field,
        values: &[String],
    ) -> Result<Vec<Profile>, VendorError> {
        let filter = match field {
            Field::Email => ProfileFilter::EmailIn(values),
            Field::Phone => ProfileFilter::MobilePhoneNumberIn(values),
        };
        run.step(self.list_profiles(filter)).await
    }
}
