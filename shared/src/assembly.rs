//! The one way the worker and the ingest service are put together, whatever runs them: the
//! Lambda start-up (`runtime`: DynamoDB, SQS, settings from SSM), `relay serve`
//! (`relay-local`: the embedded store and queue, settings from its config file) and the
//! tests. Each caller picks the adapters; the wiring between them — one shared limiter per
//! vendor account, every vendor call behind the limiter gate, the clients built once — is
//! written here only.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use crate::ingress::ingest::SetupError;
use crate::ingress::{Ingest, IngestMetrics, SourceSecrets};
use crate::mapping::{LoadError, Mappings};
use crate::queue::Queue;
use crate::secrets::{Refresh, RefreshingParameter};
use crate::store::dynamo::DynamoStore;
use crate::store::memory::MemoryStore;
use crate::store::{Clock, GcraParams, IdempotencyStore, LimiterKey, LinkStore, RateLimiter};
use crate::vendors::deliver::{DelivererMap, TargetsRefresh};
use crate::vendors::{CallGate, ClientBuildError, Vendor};
use crate::worker::setup::{VendorConfigs, build_targets, default_limits, gate_with_max_pause};
use crate::worker::{Metrics, RetryPolicy, Worker};

/// Reads and validates a mapping file, or the built-in mappings when there is none. (The
/// core only parses text; reading the file is the caller's I/O.)
pub fn load_mappings(path: Option<&Path>) -> Result<Mappings, LoadError> {
    let Some(path) = path else {
        return Mappings::builtin();
    };
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| LoadError {
        errors: vec![crate::mapping::MappingError {
            file: name.clone(),
            location: "file".into(),
            problem: format!("cannot read: {e}"),
        }],
    })?;
    Mappings::from_toml(&name, &text)
}

/// A store that keeps the shared rate-limit schedules (DynamoDB in AWS, memory locally).
pub trait LimiterStore {
    /// The limiter of one vendor account.
    fn limiter_for(&self, key: &LimiterKey, params: GcraParams) -> Arc<dyn RateLimiter>;
}

impl LimiterStore for DynamoStore {
    fn limiter_for(&self, key: &LimiterKey, params: GcraParams) -> Arc<dyn RateLimiter> {
        Arc::new(self.limiter(key, params))
    }
}

impl LimiterStore for MemoryStore {
    fn limiter_for(&self, key: &LimiterKey, params: GcraParams) -> Arc<dyn RateLimiter> {
        Arc::new(self.limiter(key, params))
    }
}

/// What a worker is built from.
pub struct WorkerParts<'a> {
    pub mappings: Arc<Mappings>,
    /// Connection settings of the vendors to sync into (a vendor left out is not synced).
    pub vendors: &'a VendorConfigs,
    pub links: Arc<dyn LinkStore>,
    pub limiter_store: &'a dyn LimiterStore,
    /// The account part of every limiter key: stacks (or local relays) that share a
    /// vendor account must use the same one.
    pub limiter_account: &'a str,
    /// Each vendor's schedule: [`crate::vendors::Limits::params`] of the configured limits (see
    /// [`crate::vendors::LimitsConfig`]), [`DEFAULT_LIMITS`] for the documented ones.
    pub limits: &'a dyn Fn(Vendor) -> GcraParams,
    pub queue: Arc<dyn Queue>,
    pub dead_letters: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
}

/// Why a worker could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AssemblyError {
    #[error("limiter key: {0}")]
    LimiterKey(String),
    #[error("{0}")]
    Client(#[from] ClientBuildError),
    #[error("{0}")]
    Enrichment(String),
}

/// The readers that complete changes from their sources ([`crate::enrich`]): with
/// `hubspot_crm` in the settings, every source signed as HubSpot is read from HubSpot's CRM
/// API, held to one limiter per account (`lim#src-hubspot_crm#<account>`) shared by every
/// instance. `None` when no reader is configured. The worker resolves completed changes in
/// `identity`, which must be the ingest's.
pub fn build_enrichment(
    mappings: &Mappings,
    vendors: &VendorConfigs,
    identity: Option<crate::store::identity::Identity>,
    limiter_store: &dyn LimiterStore,
    limiter_account: &str,
) -> Result<Option<crate::enrich::Enrichment>, AssemblyError> {
    use crate::enrich::hubspot::HubspotCrm;
    use crate::enrich::{Enrichment, SourceRead, SourceReader};
    let Some(config) = &vendors.hubspot_crm else {
        return Ok(None);
    };
    let Some(identity) = identity else {
        return Err(AssemblyError::Enrichment(
            "hubspot_crm is configured but the worker has no identity key (RELAY_IDENTITY_KEY_PARAMETER, or identity.key locally): completed changes could not be resolved to their person".into(),
        ));
    };
    let reader: Arc<dyn SourceReader> =
        Arc::new(HubspotCrm::new(config).map_err(|e| AssemblyError::Enrichment(e.to_string()))?);
    let windows = config.windows().map_err(AssemblyError::Enrichment)?;
    let params = GcraParams::from_windows(&windows, crate::store::Pacing::default())
        .map_err(|e| AssemblyError::Enrichment(format!("hubspot_crm limits: {e}")))?;
    let key = LimiterKey::for_source(reader.name(), limiter_account)
        .map_err(|e| AssemblyError::LimiterKey(e.to_string()))?;
    let limiter = limiter_store.limiter_for(&key, params);
    let readers: BTreeMap<String, SourceRead> = mappings
        .sources()
        .filter(|s| s.signature == Some(crate::mapping::signature::SignatureScheme::Hubspot))
        .map(|s| {
            (
                s.name.clone(),
                SourceRead {
                    reader: reader.clone(),
                    limiter: limiter.clone(),
                },
            )
        })
        .collect();
    if readers.is_empty() {
        tracing::warn!(
            "hubspot_crm is configured but no source is signed as HubSpot: nothing is read"
        );
        return Ok(None);
    }
    tracing::info!(
        sources = readers.keys().cloned().collect::<Vec<_>>().join(", "),
        "changes of persons new to a vendor are completed from HubSpot's CRM"
    );
    Ok(Some(Enrichment {
        readers,
        identity,
        reads: Arc::default(),
    }))
}

/// The vendors' documented limits with the default pacing, for [`WorkerParts::limits`].
pub const DEFAULT_LIMITS: fn(Vendor) -> GcraParams = default_limits;

/// Builds the worker: one shared limiter per configured vendor, its clients behind the
/// limiter gate, and the delivery loop over the given adapters.
pub fn build_worker(parts: WorkerParts<'_>) -> Result<Worker, AssemblyError> {
    build(parts, None)
}

/// [`build_worker`] whose vendor settings are re-read through `settings` (a rotated token
/// is used without a restart): on the parameter's interval, and at once when a vendor
/// refuses our credentials. `parts.vendors` is the value `settings` holds now. Vendors
/// added by a rotation need a restart (their limiter is set up at start); vendors removed
/// by one are no longer synced into.
pub fn build_rotating_worker(
    parts: WorkerParts<'_>,
    settings: Arc<RefreshingParameter<VendorConfigs>>,
) -> Result<Worker, AssemblyError> {
    build(parts, Some(settings))
}

fn build(
    parts: WorkerParts<'_>,
    settings: Option<Arc<RefreshingParameter<VendorConfigs>>>,
) -> Result<Worker, AssemblyError> {
    for (vendor, sources) in left_out(&parts.mappings, parts.vendors) {
        tracing::warn!(
            %vendor,
            sources = sources.join(", "),
            "vendor not configured: these sources' changes are not synced into it (skipped: vendor_not_configured)"
        );
    }
    let mut limiters: HashMap<Vendor, Arc<dyn RateLimiter>> = HashMap::new();
    for vendor in parts.vendors.vendors() {
        let key = LimiterKey::new(vendor, parts.limiter_account)
            .map_err(|e| AssemblyError::LimiterKey(e.to_string()))?;
        limiters.insert(
            vendor,
            parts
                .limiter_store
                .limiter_for(&key, (parts.limits)(vendor)),
        );
    }
    let gate = gate_with_max_pause(&limiters, parts.clock.clone(), parts.policy.max_wait);
    let mut targets = build_targets(parts.vendors, &gate)?;
    if let Some(settings) = settings {
        let started_with = parts.vendors.vendors();
        targets = targets.refreshed_by(Arc::new(SettingsRefresh {
            settings,
            gate,
            started_with,
        }));
    }
    Ok(Worker::new(
        parts.mappings,
        parts.links,
        targets,
        limiters,
        parts.queue,
        parts.dead_letters,
        parts.clock,
        parts.policy,
        parts.metrics,
    ))
}

/// Rebuilds the vendor clients when their settings parameter changed.
struct SettingsRefresh {
    settings: Arc<RefreshingParameter<VendorConfigs>>,
    gate: Arc<dyn CallGate>,
    started_with: Vec<Vendor>,
}

#[async_trait::async_trait]
impl TargetsRefresh for SettingsRefresh {
    async fn refresh(&self, after_auth_failure: bool) -> Option<DelivererMap> {
        let outcome = if after_auth_failure {
            self.settings.refresh_after_failure().await
        } else {
            self.settings.refresh_if_due().await
        };
        if outcome != Refresh::Updated {
            return None;
        }
        let configs = self.settings.current();
        match build_targets(&configs, &self.gate) {
            Ok(targets) => {
                let mut map = targets.snapshot();
                for vendor in configs.vendors() {
                    if !self.started_with.contains(&vendor) {
                        tracing::warn!(%vendor, "vendor added to the settings; it is synced into after a restart");
                        map.remove(&vendor);
                    }
                }
                tracing::info!(
                    parameter = self.settings.name(),
                    "vendor settings re-read; clients rebuilt"
                );
                Some(map)
            }
            Err(error) => {
                tracing::warn!(%error, "the re-read vendor settings do not build clients; keeping the ones in use");
                None
            }
        }
    }
}

/// The vendors sources list that `vendors` has no settings for, each with those sources:
/// decided once at start-up, they are not synced into (their deliveries are skipped).
pub fn left_out(mappings: &Mappings, vendors: &VendorConfigs) -> BTreeMap<Vendor, Vec<String>> {
    let configured = vendors.vendors();
    let mut left: BTreeMap<Vendor, Vec<String>> = BTreeMap::new();
    for source in mappings.sources() {
        for vendor in source.vendors.iter().filter(|v| !configured.contains(v)) {
            left.entry(*vendor).or_default().push(source.name.clone());
        }
    }
    left
}

/// Builds the ingest service; answers it with the webhook sources that have no secret (they
/// answer 404 `source_not_configured`) for the caller to log.
pub fn build_ingest(
    mappings: Arc<Mappings>,
    secrets: &SourceSecrets,
    store: Arc<dyn IdempotencyStore>,
    identity: crate::ingress::Identity,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    metrics: Arc<IngestMetrics>,
) -> Result<(Ingest, Vec<String>), SetupError> {
    // The phone metadata loads once here, not during the first request.
    crate::model::phone::warm_up();
    let (ingest, disabled) = Ingest::new(mappings, secrets, store, identity, queue, clock)?;
    Ok((ingest.with_metrics(metrics), disabled))
}
