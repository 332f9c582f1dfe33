//! In-memory `VendorSync` for tests of the code that drives syncs (the worker): records
//! every plan it is given and answers with scripted results, without any HTTP.

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use relay_shared::vendors::Vendor;
use relay_shared::vendors::sync::{SyncError, SyncOutcome, VendorSync};

/// A scripted fake for one vendor.
pub struct FakeVendor<P> {
    vendor: Vendor,
    plans: Mutex<Vec<P>>,
    script: Mutex<VecDeque<Result<SyncOutcome, SyncError>>>,
}

impl<P> std::fmt::Debug for FakeVendor<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeVendor")
            .field("vendor", &self.vendor)
            .finish_non_exhaustive()
    }
}

impl<P: Clone + Send + Sync> FakeVendor<P> {
    /// A fake that answers `Ok(SyncOutcome::default())` once its script is used up.
    pub fn new(vendor: Vendor) -> Self {
        FakeVendor {
            vendor,
            plans: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues the answer to the next unanswered `sync`.
    pub fn push(&self, result: Result<SyncOutcome, SyncError>) -> &Self {
        lock(&self.script).push_back(result);
        self
    }

    /// Every plan received, in order.
    pub fn plans(&self) -> Vec<P> {
        lock(&self.plans).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock can only come from a test already failing.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl<P: Clone + Send + Sync> VendorSync for FakeVendor<P> {
    type Plan = P;

    fn vendor(&self) -> Vendor {
        self.vendor
    }

    async fn sync(&self, plan: &P) -> Result<SyncOutcome, SyncError> {
        lock(&self.plans).push(plan.clone());
        lock(&self.script)
            .pop_front()
            .unwrap_or_else(|| Ok(SyncOutcome::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_shared::plan::{OmnivibePlan, SkipReason};

    #[tokio::test]
    async fn records_plans_and_replays_the_script() {
        let fake = FakeVendor::<OmnivibePlan>::new(Vendor::Omnivibe);
        fake.push(Ok(SyncOutcome {
            vendor_id: Some("7".into()),
            calls: 1,
            rate_limit: None,
        }));
        let plan = OmnivibePlan::Skip(SkipReason::NothingChanged);
        let first = fake.sync(&plan).await.expect("scripted ok");
        assert_eq!(first.vendor_id.as_deref(), Some("7"));
        assert_eq!(fake.sync(&plan).await, Ok(SyncOutcome::default()));
        assert_eq!(fake.plans(), vec![plan.clone(), plan]);
        assert_eq!(fake.vendor(), Vendor::Omnivibe);
    }
}
