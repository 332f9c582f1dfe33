//! Assembling a worker from vendor connection settings: the same code for Lambda (settings
//! from an SSM parameter and the environment) and for `relay serve` (settings from its
//! config file), so both run one worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::gate::DeadlineGate;
use super::{LimiterGate, Targets};
use crate::store::{Clock, GcraParams, RateLimiter};
use crate::vendors::{
    CallGate, ChannelClient, ChannelConfig, ChatwootClient, ChatwootConfig, ClientBuildError,
    HoodClient, HoodConfig, HttpSettings, OmnivibeClient, OmnivibeConfig, Vendor,
};

/// Longest one vendor call waits for its rate-limit slot before its message is handed back
/// to the queue for later.
pub const MAX_SLOT_WAIT: Duration = Duration::from_secs(3);

/// Connection settings per vendor (credentials included); a vendor left out is not synced.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VendorConfigs {
    #[serde(default)]
    pub hood: Option<HoodConfig>,
    #[serde(default)]
    pub channelio: Option<ChannelConfig>,
    #[serde(default)]
    pub omnivibe: Option<OmnivibeConfig>,
    #[serde(default)]
    pub chatwoot: Option<ChatwootConfig>,
}

impl VendorConfigs {
    /// The vendors configured.
    pub fn vendors(&self) -> Vec<Vendor> {
        [
            (Vendor::Hood, self.hood.is_some()),
            (Vendor::Channelio, self.channelio.is_some()),
            (Vendor::Omnivibe, self.omnivibe.is_some()),
            (Vendor::Chatwoot, self.chatwoot.is_some()),
        ]
        .into_iter()
        .filter_map(|(v, on)| on.then_some(v))
        .collect()
    }
}

/// The schedule each vendor's calls are held to, across all instances. Hood documents its
/// limits (10/s and 150/min per account); Channel.io and Chatwoot publish none we can rely
/// on beyond their headers, so these stay well under what they are known to allow
/// (Chatwoot's default throttle is about 3000 requests per minute per IP, shared by the
/// Omnivibe profile and the contacts API on the same host).
pub fn default_limits(vendor: Vendor) -> GcraParams {
    match vendor {
        Vendor::Hood => GcraParams::HOOD,
        Vendor::Channelio => GcraParams::new(Duration::from_millis(100), 10),
        Vendor::Omnivibe | Vendor::Chatwoot => GcraParams::new(Duration::from_millis(50), 10),
    }
}

/// Builds the vendor clients, every call behind `gate` and held to the delivery's deadline
/// by the client's own request timeout (see [`DeadlineGate`]).
pub fn build_targets(
    configs: &VendorConfigs,
    gate: &Arc<dyn CallGate>,
) -> Result<Targets, ClientBuildError> {
    let gated = |http: &HttpSettings| -> Arc<dyn CallGate> {
        Arc::new(DeadlineGate::new(
            gate.clone(),
            Duration::from_millis(http.timeout_ms),
        ))
    };
    let mut targets = Targets::default();
    if let Some(c) = &configs.hood {
        targets.hood = Some(Arc::new(HoodClient::new(c)?.with_gate(gated(&c.http))));
    }
    if let Some(c) = &configs.channelio {
        targets.channelio = Some(Arc::new(ChannelClient::new(c)?.with_gate(gated(&c.http))));
    }
    if let Some(c) = &configs.omnivibe {
        for (staff_id, client) in OmnivibeClient::agents(c)? {
            targets
                .omnivibe
                .insert(staff_id, Arc::new(client.with_gate(gated(&c.http))));
        }
    }
    if let Some(c) = &configs.chatwoot {
        targets.chatwoot = Some(Arc::new(ChatwootClient::new(c)?.with_gate(gated(&c.http))));
    }
    Ok(targets)
}

/// The call gate over the given limiters.
pub fn gate(
    limiters: &HashMap<Vendor, Arc<dyn RateLimiter>>,
    clock: Arc<dyn Clock>,
) -> Arc<dyn CallGate> {
    Arc::new(LimiterGate::new(limiters.clone(), clock, MAX_SLOT_WAIT))
}
