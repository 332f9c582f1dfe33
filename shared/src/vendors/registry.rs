//! What the adapters know of each vendor, and the one list of vendors
//! ([`relay_core::for_each_vendor`]) turned into the worker's settings and targets.
//!
//! Each vendor implements [`VendorAdapter`] in its folder (`vendors/<vendor>/mod.rs`) on
//! its core type; nothing here names a vendor, so a new vendor is its folders and one line
//! in the list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Vendor;
use super::deliver::{Deliver, Targets};
use super::http::{ClientBuildError, HttpSettings};
use super::sync::CallGate;
use crate::store::limiter::parse_duration;
use crate::store::{GcraParams, LimitsError, Pacing, Window};
use relay_core::vendors::VendorModel;

/// A vendor's connection settings, pacing and client: the adapter half of a vendor (its
/// planning half is [`VendorModel`]).
pub trait VendorAdapter: VendorModel {
    /// Connection settings, credentials included: the vendor's entry in the vendor settings
    /// (`[vendors.<name>]` of `relay.toml`, `"<name>"` of the Lambda's secrets parameter).
    type Config: DeserializeOwned + Clone + std::fmt::Debug + Send + Sync;

    /// The environment variable that replaces the configured base URL in Lambda
    /// (`RELAY_<NAME>_BASE_URL`; Chatwoot shares Omnivibe's host and variable).
    const BASE_URL_ENV: &'static str;

    /// The base URL in `config`.
    fn base_url(config: &mut Self::Config) -> &mut String;

    /// The HTTP settings in `config` (its request timeout bounds every call).
    fn http(config: &Self::Config) -> &HttpSettings;

    /// The limits the vendor's calls are held to across all instances, as windows (the
    /// vendor's documented ones; see each vendor's note where it documents none).
    /// `[limits]` in `relay.toml` or `RELAY_LIMITS` replace them.
    fn default_limits() -> &'static [Window];

    /// The deliverer for `config`, every HTTP call behind `gate`.
    fn build(
        config: &Self::Config,
        gate: Arc<dyn CallGate>,
    ) -> Result<Arc<dyn Deliver>, ClientBuildError>;
}

macro_rules! adapters {
    ($($(#[$doc:meta])* $variant:ident($module:ident),)+) => {
        /// Connection settings per vendor (credentials included); a vendor left out is not
        /// synced.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct VendorConfigs {
            $(
                $(#[$doc])*
                #[serde(default)]
                pub $module: Option<<relay_core::vendors::$module::$variant as VendorAdapter>::Config>,
            )+
            /// Not a vendor synced into but a source read from: HubSpot's CRM API, to
            /// complete a HubSpot change for a person the relay does not know yet
            /// (`crate::enrich`). Left out: such changes wait for an identifier instead.
            #[serde(default)]
            pub hubspot_crm: Option<crate::enrich::hubspot::HubspotCrmConfig>,
        }

        impl VendorConfigs {
            /// The vendors configured.
            pub fn vendors(&self) -> Vec<Vendor> {
                let mut on = Vec::new();
                $(if self.$module.is_some() { on.push(Vendor::$variant); })+
                on
            }

            /// Replaces configured base URLs with those `lookup` finds under each vendor's
            /// [`VendorAdapter::BASE_URL_ENV`].
            pub fn override_base_urls(&mut self, lookup: impl Fn(&str) -> Option<String>) {
                $(
                    type $variant = relay_core::vendors::$module::$variant;
                    if let (Some(c), Some(url)) = (
                        self.$module.as_mut(),
                        lookup(<$variant as VendorAdapter>::BASE_URL_ENV),
                    ) {
                        *<$variant as VendorAdapter>::base_url(c) = url;
                    }
                )+
            }

            /// Builds each configured vendor's deliverer; `gate_for` gives the gate of a
            /// vendor whose calls time out after the given duration.
            pub fn build_targets(
                &self,
                gate_for: &dyn Fn(Duration) -> Arc<dyn CallGate>,
            ) -> Result<Targets, ClientBuildError> {
                let mut targets = Targets::default();
                $(
                    if let Some(c) = &self.$module {
                        type $variant = relay_core::vendors::$module::$variant;
                        let timeout =
                            Duration::from_millis(<$variant as VendorAdapter>::http(c).timeout_ms);
                        targets.insert(
                            Vendor::$variant,
                            <$variant as VendorAdapter>::build(c, gate_for(timeout))?,
                        );
                    }
                )+
                Ok(targets)
            }
        }

        /// The windows `vendor`'s calls are held to when the configuration names none.
        pub fn default_windows(vendor: Vendor) -> &'static [Window] {
            match vendor {
                $(Vendor::$variant => {
                    <relay_core::vendors::$module::$variant as VendorAdapter>::default_limits()
                })+
            }
        }

        /// `[limits]` of `relay.toml`, or the JSON of the sync worker's `RELAY_LIMITS`:
        /// each vendor's windows (a vendor left out keeps its [`default_windows`]) and how
        /// they become a schedule.
        ///
        /// ```toml
        /// [limits]
        /// hood = [{ limit = 10, per = "1s" }, { limit = 150, per = "1m" }]
        /// utilisation = 0.98
        /// margin = "250ms"
        /// ```
        #[derive(Debug, Clone, Default, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct LimitsConfig {
            /// The share of the tightest window the schedule runs at, in (0, 1]
            /// (default [`crate::store::limiter::DEFAULT_UTILISATION`]).
            #[serde(default)]
            pub utilisation: Option<f64>,
            /// Taken off each schedule's burst tolerance for clock skew and dispatch
            /// jitter, e.g. `"250ms"` (default [`crate::store::limiter::DEFAULT_MARGIN`]).
            #[serde(default)]
            pub margin: Option<String>,
            $(
                #[serde(default)]
                pub $module: Option<Vec<WindowConfig>>,
            )+
        }

        impl LimitsConfig {
            /// Each vendor's windows and schedule, or the first thing wrong, named.
            pub fn resolve(&self) -> Result<Limits, LimitsConfigError> {
                let pacing = self.pacing()?;
                let mut per_vendor = BTreeMap::new();
                $(
                    let windows = match &self.$module {
                        Some(list) => list
                            .iter()
                            .enumerate()
                            .map(|(index, w)| w.window(index))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|error| LimitsConfigError::Vendor {
                                vendor: Vendor::$variant,
                                error,
                            })?,
                        None => default_windows(Vendor::$variant).to_vec(),
                    };
                    let params = GcraParams::from_windows(&windows, pacing).map_err(|error| {
                        LimitsConfigError::Vendor {
                            vendor: Vendor::$variant,
                            error,
                        }
                    })?;
                    per_vendor.insert(Vendor::$variant, VendorLimits { windows, params });
                )+
                Ok(Limits { per_vendor })
            }
        }
    };
}

relay_core::for_each_vendor!(adapters);

/// The windows of the Omnivibe host's two vendors (Omnivibe and Chatwoot, one limiter each):
/// about 20 per second with bursts, 1,200 per minute each (the earlier fixed schedule of
/// one per 50 ms, burst 10, allowed 29 in a sliding second and 1,210 in a minute), so the
/// two stay well under the host's documented ~3,000 per minute per IP together.
pub const OMNIVIBE_HOST_WINDOWS: [Window; 2] = [
    Window::new(30, Duration::from_secs(1)),
    Window::new(1_200, Duration::from_secs(60)),
];

/// One window as configured: `{ limit = 150, per = "1m" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// At most this many calls…
    pub limit: u32,
    /// …in any period this long (`"1s"`, `"1m"`, `"500ms"`, `"1h"`).
    pub per: String,
}

impl WindowConfig {
    pub(crate) fn window(&self, index: usize) -> Result<Window, LimitsError> {
        let per = parse_duration(&self.per).map_err(|reason| LimitsError::BadPeriod {
            index,
            text: self.per.clone(),
            reason,
        })?;
        Ok(Window::new(self.limit, per))
    }
}

/// A limits configuration that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitsConfigError {
    #[error("limits.{vendor}: {error}")]
    Vendor { vendor: Vendor, error: LimitsError },
    #[error("limits: {0}")]
    Pacing(LimitsError),
}

impl LimitsConfig {
    /// The pacing the configuration asks for (defaults where it says nothing).
    pub fn pacing(&self) -> Result<Pacing, LimitsConfigError> {
        let mut pacing = Pacing::default();
        if let Some(u) = self.utilisation {
            if !(u > 0.0 && u <= 1.0) {
                return Err(LimitsConfigError::Pacing(LimitsError::BadUtilisation(u)));
            }
            pacing.utilisation = u;
        }
        if let Some(text) = &self.margin {
            pacing.margin = parse_duration(text).map_err(|reason| {
                LimitsConfigError::Pacing(LimitsError::BadMargin {
                    text: text.clone(),
                    reason,
                })
            })?;
        }
        Ok(pacing)
    }
}

/// One vendor's windows and the schedule derived from them.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorLimits {
    pub windows: Vec<Window>,
    pub params: GcraParams,
}

/// Every vendor's limits, resolved from a [`LimitsConfig`].
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    per_vendor: BTreeMap<Vendor, VendorLimits>,
}

impl Default for Limits {
    /// The vendors' documented windows with the default pacing.
    fn default() -> Self {
        let mut per_vendor = BTreeMap::new();
        for vendor in Vendor::ALL {
            let windows = default_windows(vendor).to_vec();
            let params = derive_or_fallback(vendor, &windows);
            per_vendor.insert(vendor, VendorLimits { windows, params });
        }
        Limits { per_vendor }
    }
}

impl Limits {
    /// The schedule of `vendor`'s calls.
    pub fn params(&self, vendor: Vendor) -> GcraParams {
        self.per_vendor
            .get(&vendor)
            .map_or_else(|| default_limits(vendor), |l| l.params)
    }

    /// The windows `vendor`'s schedule keeps.
    pub fn windows(&self, vendor: Vendor) -> &[Window] {
        self.per_vendor
            .get(&vendor)
            .map_or_else(|| default_windows(vendor), |l| l.windows.as_slice())
    }
}

/// The schedule `vendor`'s calls are held to by default: its [`default_windows`] with the
/// default pacing.
pub fn default_limits(vendor: Vendor) -> GcraParams {
    derive_or_fallback(vendor, default_windows(vendor))
}

/// The defaults are checked by the tests; should one ever not derive, one call per second.
fn derive_or_fallback(vendor: Vendor, windows: &[Window]) -> GcraParams {
    GcraParams::from_windows(windows, Pacing::default()).unwrap_or_else(|error| {
        tracing::error!(%vendor, %error, "the default limits do not derive; one call per second");
        GcraParams::new(Duration::from_secs(1), 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &str = r#"{
        "hood": {"token": "t"},
        "channelio": {"access_key": "k", "access_secret": "s"},
        "omnivibe": {"agents": [{"staff_id": "s_7", "api_access_token": "a"}]},
        "chatwoot": {"api_access_token": "c", "account_id": 3}
    }"#;

    #[test]
    fn every_registered_vendor_has_settings_limits_and_a_target() {
        let mut configs: VendorConfigs = serde_json::from_str(ALL).unwrap();
        assert_eq!(configs.vendors(), Vendor::ALL);
        configs.override_base_urls(|var| match var {
            "RELAY_HOOD_BASE_URL" => Some("http://127.0.0.1:1/hood".into()),
            "RELAY_OMNIVIBE_BASE_URL" => Some("http://127.0.0.1:1/omni".into()),
            _ => None,
        });
        let url = |c: &Option<String>| c.clone().unwrap_or_default();
        assert_eq!(
            url(&configs.hood.as_ref().map(|c| c.base_url.clone())),
            "http://127.0.0.1:1/hood"
        );
        // Chatwoot lives on the Omnivibe host and follows its variable.
        assert_eq!(
            url(&configs.chatwoot.as_ref().map(|c| c.base_url.clone())),
            "http://127.0.0.1:1/omni"
        );
        assert_eq!(
            url(&configs.omnivibe.as_ref().map(|c| c.base_url.clone())),
            "http://127.0.0.1:1/omni"
        );
        assert!(
            configs
                .channelio
                .as_ref()
                .is_some_and(|c| c.base_url.starts_with("https://"))
        );
        let gates = std::sync::Mutex::new(Vec::new());
        let targets = configs
            .build_targets(&|timeout| {
                gates.lock().unwrap().push(timeout);
                crate::vendors::sync::open_gate()
            })
            .unwrap();
        assert_eq!(targets.vendors(), Vendor::ALL);
        assert_eq!(gates.lock().unwrap().len(), Vendor::COUNT);
        for vendor in Vendor::ALL {
            assert!(
                GcraParams::from_windows(default_windows(vendor), Pacing::default()).is_ok(),
                "{vendor}'s default windows derive a schedule"
            );
        }
        assert_eq!(default_limits(Vendor::Hood), GcraParams::HOOD);
    }

    #[test]
    fn an_unknown_vendor_in_the_settings_is_refused() {
        let err = serde_json::from_str::<VendorConfigs>(r#"{"mailchimp": {}}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `mailchimp`"),
            "{err}"
        );
    }
}
