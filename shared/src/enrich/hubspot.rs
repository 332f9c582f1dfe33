//! HubSpot's CRM API v3, read side (`vendor-notes.md`, "Reading from a source"):
//! `GET /crm/v3/objects/contacts/{contactId}?properties=…` with the private app's token.
//! The answer's properties are turned into the `contact.propertyChange` events HubSpot's
//! webhooks send, so the `hubspot` source mapping reads them as it reads the webhooks.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use url::Url;

use super::{ReadError, SourceReader};
use crate::store::Window;
use crate::vendors::HttpSettings;
use crate::vendors::http::{api_client, credential_safe_base};

/// HubSpot's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";

/// The properties read by default: those the built-in `hubspot` mapping maps.
pub const DEFAULT_PROPERTIES: [&str; 7] = [
    "email",
    "phone",
    "mobilephone",
    "firstname",
    "lastname",
    "company",
    "lifecyclestage",
];

/// HubSpot's documented limit for a private app on the lower tiers: a burst of 100 requests
/// per 10 s per account, shared by all its apps (150 on Professional and Enterprise; say so
/// with `limits`).
pub const DEFAULT_WINDOWS: [Window; 1] = [Window::new(100, Duration::from_secs(10))];

/// The settings of the HubSpot CRM reader: `"hubspot_crm"` in the sync worker's vendor
/// settings (the secrets parameter), `[vendors.hubspot_crm]` in `relay.toml`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubspotCrmConfig {
    /// The private app's access token (scope `crm.objects.contacts.read`).
    pub token: SecretString,
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The properties to read (they must be ones the source mapping maps to be of use).
    #[serde(default = "default_properties")]
    pub properties: Vec<String>,
    /// The account's windows, shared by every instance (default [`DEFAULT_WINDOWS`]).
    #[serde(default)]
    pub limits: Option<Vec<crate::vendors::WindowConfig>>,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_properties() -> Vec<String> {
    DEFAULT_PROPERTIES.iter().map(|p| (*p).to_owned()).collect()
}

impl HubspotCrmConfig {
    /// Settings with the defaults.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        HubspotCrmConfig {
            token,
            base_url: base_url.into(),
            properties: default_properties(),
            limits: None,
            http: HttpSettings::default(),
        }
    }

    /// The windows the reads are held to.
    pub fn windows(&self) -> Result<Vec<Window>, String> {
        match &self.limits {
            None => Ok(DEFAULT_WINDOWS.to_vec()),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(index, w)| {
                    w.window(index)
                        .map_err(|e| format!("hubspot_crm limits: {e}"))
                })
                .collect(),
        }
    }
}

impl std::fmt::Debug for HubspotCrmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubspotCrmConfig")
            .field("token", &crate::model::redact::REDACTED)
            .field("base_url", &self.base_url)
            .field("properties", &self.properties)
            .field("limits", &self.limits)
            .field("http", &self.http)
            .finish()
    }
}

/// Why the reader could not be built (from configuration, at start-up).
#[derive(Debug, thiserror::Error)]
pub enum HubspotBuildError {
    #[error(
        "hubspot_crm: base_url must be an absolute https URL (http only to 127.0.0.1, [::1] or localhost)"
    )]
    BaseUrl,
    #[error("hubspot_crm: the token is not a valid HTTP header value")]
    Token,
    #[error("hubspot_crm: {0}")]
    Config(String),
    #[error("hubspot_crm: building the HTTP client failed: {0}")]
    Http(#[source] reqwest::Error),
}

/// Reads contacts from HubSpot's CRM. Built once per process.
pub struct HubspotCrm {
    client: reqwest::Client,
    base: Url,
    properties: String,
    timeout: Duration,
}

impl std::fmt::Debug for HubspotCrm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubspotCrm")
            .field("base", &self.base.as_str())
            .field("properties", &self.properties)
            .finish_non_exhaustive()
    }
}

/// `GET /crm/v3/objects/contacts/{id}`'s answer (the fields used).
#[derive(Deserialize)]
struct ContactObject {
    id: String,
    #[serde(default)]
    properties: serde_json::Map<String, Value>,
    #[serde(default, rename = "updatedAt")]
    updated_at: Option<DateTime<Utc>>,
}

impl HubspotCrm {
    pub fn new(config: &HubspotCrmConfig) -> Result<Self, HubspotBuildError> {
        // The token travels in a header: https, or plain http only to this machine (mocks).
        let base = credential_safe_base(&config.base_url).ok_or(HubspotBuildError::BaseUrl)?;
        if config.properties.is_empty()
            || config
                .properties
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            return Err(HubspotBuildError::Config(
                "properties must be HubSpot property names ([a-z0-9_], at least one)".into(),
            ));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.token.expose_secret()))
            .map_err(|_| HubspotBuildError::Token)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let client = api_client(&config.http, headers).map_err(HubspotBuildError::Http)?;
        Ok(HubspotCrm {
            client,
            base,
            properties: config.properties.join(","),
            timeout: Duration::from_millis(config.http.timeout_ms),
        })
    }

    fn url(&self, object_id: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend(["crm", "v3", "objects", "contacts", object_id]);
        }
        url.query_pairs_mut()
            .append_pair("properties", &self.properties);
        url
    }
}

#[async_trait::async_trait]
impl SourceReader for HubspotCrm {
    fn name(&self) -> &'static str {
        "hubspot_crm"
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The contact's properties as `contact.propertyChange` events of HubSpot's webhook
    /// format (one per property that has a value, `occurredAt` its `updatedAt`), or `None`
    /// when HubSpot answers 404 (the contact is gone).
    async fn read(&self, object_id: &str) -> Result<Option<Value>, ReadError> {
        let response = self
            .client
            .get(self.url(object_id))
            .send()
            .await
            .map_err(|e| ReadError::Transient(format!("HubSpot CRM read failed: {}", kind(&e))))?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            404 => return Ok(None),
            401 | 403 => return Err(ReadError::Auth(status)),
            429 => {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                return Err(ReadError::RateLimited { retry_after });
            }
            500..=599 => {
                return Err(ReadError::Transient(format!(
                    "HubSpot CRM read: HTTP {status}"
                )));
            }
            _ => {
                return Err(ReadError::Permanent(format!(
                    "HubSpot CRM read: HTTP {status}"
                )));
            }
        }
        let object: ContactObject = response.json().await.map_err(|e| {
            ReadError::Transient(format!("HubSpot CRM answer unreadable: {}", kind(&e)))
        })?;
        Ok(Some(as_events(&object)))
    }
}

/// The transport failure's kind, never its text (which may quote the URL).
fn kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_decode() {
        "decode"
    } else {
        "transport"
    }
}

/// The object's properties as the webhook events HubSpot would send for them.
fn as_events(object: &ContactObject) -> Value {
    let at = object
        .updated_at
        .map_or_else(|| Utc::now().timestamp_millis(), |t| t.timestamp_millis());
    let events: Vec<Value> = object
        .properties
        .iter()
        .filter(|(_, value)| value.as_str().is_some_and(|v| !v.trim().is_empty()))
        .enumerate()
        .map(|(i, (name, value))| {
            json!({
                "eventId": format!("crm-{}-{i}", object.id),
                "subscriptionType": "contact.propertyChange",
                "objectId": object.id.parse::<u64>().map_or_else(|_| json!(object.id), |n| json!(n)),
                "propertyName": name,
                "propertyValue": value,
                "occurredAt": at,
            })
        })
        .collect();
    Value::Array(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_not_in_debug_output_and_http_needs_loopback() {
        let config = HubspotCrmConfig::new(
            "https://api.hubapi.com",
            SecretString::from("pat-na1-11111111-2222"),
        );
        assert!(!format!("{config:?}").contains("pat-na1"));
        assert!(!format!("{:?}", HubspotCrm::new(&config).unwrap()).contains("pat-na1"));
        let plain = HubspotCrmConfig::new("http://api.hubapi.com", SecretString::from("t"));
        assert!(matches!(
            HubspotCrm::new(&plain),
            Err(HubspotBuildError::BaseUrl)
        ));
        let local = HubspotCrmConfig::new("http://127.0.0.1:9", SecretString::from("t"));
        assert!(HubspotCrm::new(&local).is_ok());
    }

    #[test]
    fn blank_properties_are_left_out_and_the_object_id_stays_a_number() {
        let object: ContactObject = serde_json::from_value(json!({
            "id": "901",
            "properties": {"email": "Dana@Example.com", "phone": "", "firstname": "Dana", "lastname": null},
            "createdAt": "2026-11-20T15:00:00.000Z",
            "updatedAt": "2026-11-20T15:05:00.000Z",
            "archived": false
        }))
        .unwrap();
        let events = as_events(&object);
        let names: Vec<&str> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["propertyName"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["email", "firstname"]);
        assert_eq!(events[0]["objectId"], json!(901));
        assert_eq!(events[0]["occurredAt"], json!(1_795_187_100_000_i64));
    }
}
