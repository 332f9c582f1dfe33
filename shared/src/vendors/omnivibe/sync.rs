//! Applying an [`OmnivibePlan`]: one PUT of the agent's own profile.

use async_trait::async_trait;

use super::client::OmnivibeClient;
use crate::plan::OmnivibePlan;
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::sync::{Run, SyncError, SyncOutcome, VendorSync};

#[async_trait]
impl VendorSync for OmnivibeClient {
    type Plan = OmnivibePlan;

    fn vendor(&self) -> Vendor {
        Vendor::Omnivibe
    }

    /// The outcome's `vendor_id` is the agent id.
    async fn sync(&self, plan: &OmnivibePlan) -> Result<SyncOutcome, SyncError> {
        let mut run = Run::new(Vendor::Omnivibe, self.gate.as_ref());
        let result = self.apply(&mut run, plan).await;
        let outcome = run.finish(result);
        match &outcome {
            Ok(o) => tracing::info!(
                vendor = "omnivibe",
                calls = o.calls,
                agent_id = o.vendor_id.as_deref(),
                "omnivibe sync done"
            ),
            Err(e) => {
                tracing::warn!(vendor = "omnivibe", calls = e.calls, class = ?e.error.class(), error = %e.error, "omnivibe sync failed")
            }
        }
        outcome
    }
}

impl OmnivibeClient {
    async fn apply(&self, run: &mut Run<'_>, plan: &OmnivibePlan) -> Result<(), VendorError> {
        match plan {
            OmnivibePlan::Update(body) if body.profile.is_empty() => {
                tracing::debug!(vendor = "omnivibe", "empty profile update skipped");
            }
            OmnivibePlan::Update(body) => {
                let agent = run.step(self.update_profile(body)).await?;
                run.vendor_id = Some(agent.id.to_string());
            }
            OmnivibePlan::Skip(reason) => {
                tracing::debug!(
                    vendor = "omnivibe",
                    reason = reason.code(),
                    "nothing to send"
                );
            }
        }
        Ok(())
    }
}
