//! Delivering one change to one vendor: plan it (pure, the vendor's
//! [`VendorModel`](relay_core::vendors::VendorModel)) and apply the plan through that
//! vendor's sync adapter. [`Targets`] holds one [`Deliver`] per configured vendor; the
//! worker asks it by [`Vendor`] and never names a vendor itself.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use relay_core::vendors::VendorModel;

use crate::mapping::Mappings;
use crate::model::ContactChange;
use crate::plan::{PlanError, Planned, SkipReason, VendorState};
use crate::vendors::{SyncError, Vendor, VendorSync};

/// What a delivery did at the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The vendor's id of the record, when known.
    pub vendor_id: Option<String>,
    /// Fingerprints of the fields this change is now the newest to have set (those sent,
    /// and on a skip too those already holding its value), to record in the link with
    /// [`crate::plan::record_applied`].
    pub applied: BTreeMap<String, String>,
    /// HTTP calls made.
    pub calls: u32,
    /// Why nothing was sent, when nothing was.
    pub skipped: Option<SkipReason>,
}

impl Delivered {
    /// Nothing sent, for `reason`; the link keeps what it knows.
    pub fn skipped(state: &VendorState, reason: SkipReason) -> Self {
        Delivered {
            vendor_id: state.vendor_id.clone(),
            applied: BTreeMap::new(),
            calls: 0,
            skipped: Some(reason),
        }
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The change cannot be expressed as requests this vendor accepts.
    #[error("{0}")]
    Plan(#[from] PlanError),
    /// The vendor call failed.
    #[error("{0}")]
    Sync(#[from] SyncError),
}

/// Delivers changes to one vendor.
#[async_trait]
pub trait Deliver: Send + Sync {
    /// Plans `change` from `state` and applies the plan. `None` when the mappings have no
    /// section for this vendor.
    async fn deliver(
        &self,
        mappings: &Mappings,
        change: &ContactChange,
        state: &VendorState,
    ) -> Option<Result<Delivered, DeliveryError>>;
}

/// The usual [`Deliver`]: vendor `V`'s plan through one sync adapter.
pub struct Synced<V: VendorModel> {
    sync: Arc<dyn VendorSync<Plan = V::Plan>>,
    vendor: PhantomData<V>,
}

impl<V: VendorModel> Synced<V> {
    pub fn new(sync: Arc<dyn VendorSync<Plan = V::Plan>>) -> Self {
        Synced {
            sync,
            vendor: PhantomData,
        }
    }
}

#[async_trait]
impl<V: VendorModel> Deliver for Synced<V> {
    async fn deliver(
        &self,
        mappings: &Mappings,
        change: &ContactChange,
        state: &VendorState,
    ) -> Option<Result<Delivered, DeliveryError>> {
        let mapping = mappings.vendors.get::<V>()?;
        Some(apply::<V>(self.sync.as_ref(), V::plan(change, state, mapping), state).await)
    }
}

/// Applies a plan of vendor `V`: a skip costs no call, anything else goes through `sync`.
pub async fn apply<V: VendorModel>(
    sync: &dyn VendorSync<Plan = V::Plan>,
    planned: Result<Planned<V::Plan>, PlanError>,
    state: &VendorState,
) -> Result<Delivered, DeliveryError> {
    let planned = planned?;
    if let Some(reason) = V::skip_reason(&planned.plan) {
        return Ok(Delivered {
            vendor_id: state.vendor_id.clone(),
            applied: planned.applied,
            calls: 0,
            skipped: Some(reason),
        });
    }
    let outcome = sync.sync(&planned.plan).await?;
    Ok(Delivered {
        vendor_id: outcome.vendor_id.or_else(|| state.vendor_id.clone()),
        applied: planned.applied,
        calls: outcome.calls,
        skipped: None,
    })
}

/// One [`Deliver`] per configured vendor.
#[derive(Clone, Default)]
pub struct Targets {
    by_vendor: BTreeMap<Vendor, Arc<dyn Deliver>>,
}

impl Targets {
    /// Adds (or replaces) `vendor`'s deliverer.
    pub fn insert(&mut self, vendor: Vendor, deliver: Arc<dyn Deliver>) {
        self.by_vendor.insert(vendor, deliver);
    }

    /// These targets plus vendor `V` through `sync` (tests, benchmarks).
    #[must_use]
    pub fn with<V: VendorModel>(mut self, sync: Arc<dyn VendorSync<Plan = V::Plan>>) -> Self {
        self.insert(V::VENDOR, Arc::new(Synced::<V>::new(sync)));
        self
    }

    /// Plans `change` for `vendor` from `state` and applies the plan. `None` when the
    /// vendor has no adapter or no mapping here.
    pub async fn deliver(
        &self,
        mappings: &Mappings,
        vendor: Vendor,
        change: &ContactChange,
        state: &VendorState,
    ) -> Option<Result<Delivered, DeliveryError>> {
        self.by_vendor
            .get(&vendor)?
            .deliver(mappings, change, state)
            .await
    }

    /// Whether `vendor` has an adapter.
    pub fn has(&self, vendor: Vendor) -> bool {
        self.by_vendor.contains_key(&vendor)
    }

    /// The vendors with an adapter.
    pub fn vendors(&self) -> impl Iterator<Item = Vendor> + '_ {
        self.by_vendor.keys().copied()
    }
}
