//! Applying a [`ChatwootPlan`]: update a known contact, or search → update / create, with a
//! 422 uniqueness conflict on create (another event created it meanwhile) resolved by
//! searching again and updating.

use async_trait::async_trait;

use super::client::ChatwootClient;
use super::wire::ContactBody;
use crate::plan::ChatwootPlan;
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::sync::{Run, SyncError, SyncOutcome, VendorSync};

#[async_trait]
impl VendorSync for ChatwootClient {
    type Plan = ChatwootPlan;

    fn vendor(&self) -> Vendor {
        Vendor::Chatwoot
    }

    /// The outcome's `vendor_id` is the contact id.
    async fn sync(&self, plan: &ChatwootPlan) -> Result<SyncOutcome, SyncError> {
        let mut run = Run::new(Vendor::Chatwoot, self.gate.as_ref());
        let result = self.apply(&mut run, plan).await;
        let outcome = run.finish(result);
        match &outcome {
            Ok(o) => tracing::info!(
                vendor = "chatwoot",
                calls = o.calls,
                contact_id = o.vendor_id.as_deref(),
                "chatwoot sync done"
            ),
            Err(e) => {
                tracing::warn!(vendor = "chatwoot", calls = e.calls, class = ?e.error.class(), error = %e.error, "chatwoot sync failed")
            }
        }
        outcome
    }
}

impl ChatwootClient {
    async fn apply(&self, run: &mut Run<'_>, plan: &ChatwootPlan) -> Result<(), VendorError> {
        match plan {
            ChatwootPlan::Update { contact_id, body } => self.update(run, *contact_id, body).await,
            ChatwootPlan::Resolve { queries, body } => {
                // The search and then the create or the update of what it found: two calls
                // either way, booked in one reservation.
                if !queries.is_empty() && !body.is_empty() {
                    run.expect(2);
                }
                // The first query (usually the e-mail) finds an existing contact in one call.
                if let Some(first) = queries.first()
                    && let Some(id) = self.find(run, first).await?
                {
                    return self.update(run, id, body).await;
                }
                match run.step(self.create_contact(body)).await {
                    Ok(contact) => {
                        tracing::debug!(
                            vendor = "chatwoot",
                            contact_id = contact.id,
                            "contact created"
                        );
                        run.vendor_id = Some(contact.id.to_string());
                        Ok(())
                    }
                    Err(conflict @ VendorError::Permanent { status: 422, .. }) => {
                        // Another contact holds one of the unique values (created meanwhile,
                        // or known by its phone or identifier): find it by any of them.
                        tracing::debug!(vendor = "chatwoot", "create conflicted; searching again");
                        for query in queries {
                            if let Some(id) = self.find(run, query).await? {
                                return self.update(run, id, body).await;
                            }
                        }
                        Err(conflict)
                    }
                    Err(e) => Err(e),
                }
            }
            ChatwootPlan::Skip(reason) => {
                tracing::debug!(
                    vendor = "chatwoot",
                    reason = reason.code(),
                    "nothing to send"
                );
                Ok(())
            }
        }
    }

    async fn update(
        &self,
        run: &mut Run<'_>,
        id: u64,
        body: &ContactBody,
    ) -> Result<(), VendorError> {
        run.vendor_id = Some(id.to_string());
        if body.is_empty() {
            tracing::debug!(vendor = "chatwoot", "empty update skipped");
            return Ok(());
        }
        run.step(self.update_contact(id, body)).await?;
        Ok(())
    }

    /// Searches and keeps only an exact hit (Chatwoot's search matches substrings).
    async fn find(&self, run: &mut Run<'_>, query: &str) -> Result<Option<u64>, VendorError> {
        let hits = run.step(self.search_contacts(query)).await?;
        Ok(hits.iter().find(|c| c.matches_exactly(query)).map(|c| c.id))
    }
}
