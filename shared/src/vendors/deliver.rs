//! Delivering one change to one vendor: plan it (pure, the vendor's
//! [`VendorModel`](relay_core::vendors::VendorModel)) and apply the plan through that
//! vendor's sync adapter. [`Targets`] holds one [`Deliver`] per configured vendor; the
//! worker asks it by [`Vendor`] and never names a vendor itself.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use relay_core::vendors::VendorModel;

use crate::mapping::Mappings;
use crate::model::ContactChange;
use crate::plan::{AppliedField, PlanError, Planned, SkipReason, VendorState};
use crate::vendors::{ErrorClass, SyncError, Vendor, VendorSync};

/// What a delivery did at the vendor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The vendor's id of the record, when known.
    pub vendor_id: Option<String>,
    /// The fields this change is now the newest to have set (those sent, and on a skip too
    /// those already holding its value), each with its fingerprint and version, to record
    /// in the link with [`crate::plan::record_applied`].
    pub applied: BTreeMap<String, AppliedField>,
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

/// The deliverers by vendor, as one set (what a refresh swaps in whole).
pub type DelivererMap = BTreeMap<Vendor, Arc<dyn Deliver>>;

/// Rebuilds the deliverers when the vendor settings changed (a rotated token): the worker
/// keeps delivering with the old ones until a new set is in use.
#[async_trait]
pub trait TargetsRefresh: Send + Sync {
    /// A new set when the settings changed. `after_auth_failure`: a vendor just refused
    /// our credentials, so look now (the implementation bounds how often); otherwise look
    /// only when the interval says the settings are due.
    async fn refresh(&self, after_auth_failure: bool) -> Option<DelivererMap>;
}

/// One [`Deliver`] per configured vendor, optionally re-read on rotation.
#[derive(Clone, Default)]
pub struct Targets {
    by_vendor: Arc<RwLock<DelivererMap>>,
    refresh: Option<Arc<dyn TargetsRefresh>>,
}

impl Targets {
    /// Adds (or replaces) `vendor`'s deliverer.
    pub fn insert(&mut self, vendor: Vendor, deliver: Arc<dyn Deliver>) {
        self.by_vendor
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(vendor, deliver);
    }

    /// These targets plus vendor `V` through `sync` (tests, benchmarks).
    #[must_use]
    pub fn with<V: VendorModel>(mut self, sync: Arc<dyn VendorSync<Plan = V::Plan>>) -> Self {
        self.insert(V::VENDOR, Arc::new(Synced::<V>::new(sync)));
        self
    }

    /// Re-reads the settings through `refresh`: on its interval before a delivery, and at
    /// once when a vendor refuses our credentials (then the delivery is tried once more
    /// with the new ones).
    #[must_use]
    pub fn refreshed_by(mut self, refresh: Arc<dyn TargetsRefresh>) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// The deliverers in use now.
    pub fn snapshot(&self) -> DelivererMap {
        self.by_vendor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, map: DelivererMap) {
        *self
            .by_vendor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = map;
    }

    fn get(&self, vendor: Vendor) -> Option<Arc<dyn Deliver>> {
        self.by_vendor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&vendor)
            .cloned()
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
        if let Some(refresh) = &self.refresh
            && let Some(map) = refresh.refresh(false).await
        {
            self.replace(map);
        }
        let result = self.get(vendor)?.deliver(mappings, change, state).await;
        let refused = matches!(
            &result,
            Some(Err(DeliveryError::Sync(e))) if e.error.class() == ErrorClass::Auth
        );
        if refused
            && let Some(refresh) = &self.refresh
            && let Some(map) = refresh.refresh(true).await
        {
            tracing::info!(%vendor, "credentials refused; the vendor settings changed, trying once more with the new ones");
            self.replace(map);
            return self.get(vendor)?.deliver(mappings, change, state).await;
        }
        result
    }

    /// Whether `vendor` has an adapter.
    pub fn has(&self, vendor: Vendor) -> bool {
        self.by_vendor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&vendor)
    }

    /// The vendors with an adapter.
    pub fn vendors(&self) -> Vec<Vendor> {
        self.by_vendor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }
}
