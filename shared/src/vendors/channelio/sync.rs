//! Applying a [`ChannelPlan`]: upsert by memberId, or PATCH a known user id.

use async_trait::async_trait;

use super::client::ChannelClient;
use crate::plan::ChannelPlan;
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::sync::{Run, SyncError, SyncOutcome, VendorSync};

#[async_trait]
impl VendorSync for ChannelClient {
    type Plan = ChannelPlan;

    fn vendor(&self) -> Vendor {
        Vendor::Channelio
    }

    /// The outcome's `vendor_id` is the Channel.io user id.
    async fn sync(&self, plan: &ChannelPlan) -> Result<SyncOutcome, SyncError> {
        let mut run = Run::new(Vendor::Channelio, self.gate.as_ref());
        let result = self.apply(&mut run, plan).await;
        let outcome = run.finish(result);
        match &outcome {
            Ok(o) => tracing::info!(
                vendor = "channelio",
                calls = o.calls,
                user_id = o.vendor_id.as_deref(),
                "channelio sync done"
            ),
            Err(e) => {
                tracing::warn!(vendor = "channelio", calls = e.calls, class = ?e.error.class(), error = %e.error, "channelio sync failed")
            }
        }
        outcome
    }
}

impl ChannelClient {
    async fn apply(&self, run: &mut Run<'_>, plan: &ChannelPlan) -> Result<(), VendorError> {
        match plan {
            ChannelPlan::Upsert { member_id, body } => {
                let answer = run.step(self.upsert_user(member_id, body)).await?;
                run.vendor_id = Some(answer.user.id);
            }
            ChannelPlan::Patch { user_id, body } => {
                run.vendor_id = Some(user_id.clone());
                if body.is_empty() {
                    tracing::debug!(vendor = "channelio", "empty patch skipped");
                    return Ok(());
                }
                let answer = run.step(self.patch_user(user_id, body)).await?;
                run.vendor_id = Some(answer.user.id);
            }
            ChannelPlan::Skip(reason) => {
                tracing::debug!(
                    vendor = "channelio",
                    reason = reason.code(),
                    "nothing to send"
                );
            }
        }
        Ok(())
    }
}
