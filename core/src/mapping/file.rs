//! The mapping file as written (TOML). `deny_unknown_fields` everywhere, so a typo such as
//! `feilds` is an error naming the file and line instead of a silently ignored section.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingFile {
    #[serde(default)]
    pub settings: SettingsSection,
    #[serde(default)]
    pub sources: BTreeMap<String, SourceSection>,
    #[serde(default)]
    pub vendors: VendorsSection,
}

/// `[settings]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsSection {
    /// ISO 3166-1 alpha-2 region for phone numbers written without a country code.
    #[serde(default = "default_region")]
    pub default_phone_region: String,
}

impl Default for SettingsSection {
    fn default() -> Self {
        SettingsSection {
            default_phone_region: default_region(),
        }
    }
}

fn default_region() -> String {
    "US".into()
}

/// Which ingest path accepts a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `POST /hooks/forms/{source}` (form-signup function).
    Forms,
    /// `POST /hooks/crm/{source}` (crm-change function).
    Crm,
    /// EventBridge events from the user's own apps (event-sync function).
    Events,
}

impl Route {
    /// The HTTP path the route is served on (`None` for EventBridge).
    pub fn path(self) -> Option<&'static str> {
        match self {
            Route::Forms => Some("/hooks/forms/{source}"),
            Route::Crm => Some("/hooks/crm/{source}"),
            Route::Events => None,
        }
    }
}

/// `[sources.<name>]`: how to read one sender's payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    pub route: Route,
    /// For `route = "events"`: the EventBridge `detail-type` this mapping handles.
    #[serde(default)]
    pub detail_type: Option<String>,
    /// How the sender signs its requests (`forms` and `crm` routes; secrets are configured
    /// apart from mappings), e.g. `{ scheme = "typeform" }`.
    #[serde(default)]
    pub signature: Option<crate::mapping::signature::SignatureScheme>,
    /// Vendors this source's contacts are synced into.
    pub vendors: Vec<String>,
    /// JMESPath selecting the list of events when one delivery carries several (HubSpot).
    #[serde(default)]
    pub each: Option<String>,
    /// JMESPath for the sender's event id, relative to one event.
    #[serde(default)]
    pub event_id: Option<String>,
    /// JMESPath for when the change happened (RFC 3339 string, or epoch ms / s number).
    #[serde(default)]
    pub occurred_at: Option<String>,
    /// A fixed change kind (`signup`, `created`, `updated`, `deleted`)...
    #[serde(default)]
    pub kind: Option<String>,
    /// ...or a JMESPath whose value is looked up in `kinds`.
    #[serde(default)]
    pub kind_from: Option<String>,
    #[serde(default)]
    pub kinds: BTreeMap<String, String>,
    /// Region for this source's phone numbers written without a country code (overrides
    /// `[settings] default_phone_region`), e.g. `"DE"` for a German form.
    #[serde(default)]
    pub phone_region: Option<String>,
    /// Namespace of contact keys from `fields.key` (default: the source name).
    #[serde(default)]
    pub key_namespace: Option<String>,
    /// Events of one delivery for the same contact key become one change, the newest
    /// value of each field winning (HubSpot sends one event per changed property).
    #[serde(default)]
    pub combine_by_key: bool,
    /// `custom.<name>` fields joined with spaces into `full_name` when a change holds every
    /// one of them and no full name (HubSpot's `firstname` and `lastname`).
    #[serde(default)]
    pub full_name_from: Vec<String>,
    /// Canonical field → JMESPath, relative to one event.
    pub fields: BTreeMap<String, String>,
}

/// `[vendors.<name>]`: one section per vendor, read by that vendor's own rules
/// (`relay_core::vendors::<name>`), kept with its position for errors.
pub type VendorsSection = BTreeMap<String, toml::Spanned<toml::Value>>;
