//! What the adapters know of each vendor, and the one list of vendors
//! ([`relay_core::for_each_vendor`]) turned into the worker's settings and targets.
//!
//! Each vendor implements [`VendorAdapter`] in its folder (`vendors/<vendor>/mod.rs`) on
//! its core type; nothing here names a vendor, so a new vendor is its folders and one line
//! in the list.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Vendor;
use super::deliver::{Deliver, Targets};
use super::http::{ClientBuildError, HttpSettings};
use super::sync::CallGate;
use crate::store::GcraParams;
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

    /// The schedule the vendor's calls are held to across all instances.
    fn default_limits() -> GcraParams;

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

        /// The schedule `vendor`'s calls are held to, across all instances.
        pub fn default_limits(vendor: Vendor) -> GcraParams {
            match vendor {
                $(Vendor::$variant => {
                    <relay_core::vendors::$module::$variant as VendorAdapter>::default_limits()
                })+
            }
        }
    };
}

relay_core::for_each_vendor!(adapters);

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
