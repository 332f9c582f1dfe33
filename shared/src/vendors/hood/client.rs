//! Ocamba Hood client: one typed method per endpoint of `vendor-docs/hood-*.txt`.

use std::collections::HashSet;
use std::sync::Arc;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::wire::{CreateProfile, CreateProfileProperty, PatchProfile, Profile, ProfileProperty};
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::http::{
    ClientBuildError, HttpCore, HttpSettings, VendorResponse, auth_headers,
};
use crate::vendors::sync::{CallGate, open_gate};

/// Hood's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.ocamba.com";

/// Hood connection settings (`Authorization: Bearer <token>`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoodConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub token: SecretString,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl HoodConfig {
    /// Settings with the default timeouts.
    pub fn new(base_url: impl Into<String>, token: SecretString) -> Self {
        HoodConfig {
            base_url: base_url.into(),
            token,
            http: HttpSettings::default(),
        }
    }
}

impl std::fmt::Debug for HoodConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoodConfig")
            .field("base_url", &self.base_url)
            .field("token", &crate::model::redact::REDACTED)
            .field("http", &self.http)
            .finish()
    }
}

/// The list filter Hood documents (`field=op:value`, ops `eq` and `in`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum ProfileFilter<'a> {
    Email(&'a str),
    MobilePhoneNumber(&'a str),
    /// `email=in:a,b,c` (values without commas).
    EmailIn(&'a [String]),
    /// `mobile_phone_number=in:a,b,c`.
    MobilePhoneNumberIn(&'a [String]),
}

impl std::fmt::Debug for ProfileFilter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProfileFilter::Email(_) => "ProfileFilter::Email(<redacted>)",
            ProfileFilter::MobilePhoneNumber(_) => "ProfileFilter::MobilePhoneNumber(<redacted>)",
            ProfileFilter::EmailIn(_) => "ProfileFilter::EmailIn(<redacted>)",
            ProfileFilter::MobilePhoneNumberIn(_) => {
                "ProfileFilter::MobilePhoneNumberIn(<redacted>)"
            }
        })
    }
}

impl ProfileFilter<'_> {
    /// `email=eq:<value>` (or `email=in:<v1>,<v2>`) with each value form-urlencoded
    /// (`+` → `%2B`, `@` → `%40`), so a `+` in an E.164 number or an address is not read
    /// back as a space; the commas between values stay literal.
    pub fn query(&self) -> String {
        let encode =
            |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
        let list = |vs: &[String]| vs.iter().map(|v| encode(v)).collect::<Vec<_>>().join(",");
        match self {
            ProfileFilter::Email(v) => format!("email=eq:{}", encode(v)),
            ProfileFilter::MobilePhoneNumber(v) => format!("mobile_phone_number=eq:{}", encode(v)),
            ProfileFilter::EmailIn(vs) => format!("email=in:{}", list(vs)),
            ProfileFilter::MobilePhoneNumberIn(vs) => {
                format!("mobile_phone_number=in:{}", list(vs))
            }
        }
    }
}

/// Ocamba Hood. Built once per process; also caches which custom property labels exist.
pub struct HoodClient {
    pub(super) core: HttpCore,
    pub(super) gate: Arc<dyn CallGate>,
    /// Labels of the custom properties known to exist; `None` until listed once.
    pub(super) properties: tokio::sync::Mutex<Option<HashSet<String>>>,
    /// Lookups of concurrent deliveries waiting to share one list call.
    pub(super) lookups: super::lookup::Lookups,
}

impl std::fmt::Debug for HoodClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoodClient")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/hood/profiles` answers an array (tolerated: `{"data": [...]}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum ProfileList {
    Bare(Vec<Profile>),
    Wrapped { data: Vec<Profile> },
}

/// `GET /v1/hood/profile-properties` answers an array (tolerated: `{"data": [...]}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum PropertyList {
    Bare(Vec<ProfileProperty>),
    Wrapped { data: Vec<ProfileProperty> },
}

/// Reads an object with an `id`, bare or under `data`.
fn object_with_id<T: serde::de::DeserializeOwned>(v: &Value) -> Option<T> {
    [Some(v), v.get("data")]
        .into_iter()
        .flatten()
        .filter(|o| o.get("id").is_some())
        .find_map(|o| serde_json::from_value(o.clone()).ok())
}

impl HoodClient {
    pub fn new(config: &HoodConfig) -> Result<Self, ClientBuildError> {
        let auth = auth_headers(
            Vendor::Hood,
            &[("authorization", &config.token, Some("Bearer "))],
        )?;
        Ok(HoodClient {
            core: HttpCore::new(Vendor::Hood, &config.base_url, auth, config.http)?,
            gate: open_gate(),
            properties: tokio::sync::Mutex::new(None),
            lookups: super::lookup::Lookups::default(),
        })
    }

    /// Paces every call of [`crate::vendors::VendorSync::sync`] through `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        self.gate = gate;
        self
    }

    /// `POST /v1/hood/profiles` → 201. Newer docs answer the stored profile (with `id`),
    /// older ones no body: then the value is `None` and the caller looks the id up.
    pub async fn create_profile(
        &self,
        body: &CreateProfile,
    ) -> Result<VendorResponse<Option<Profile>>, VendorError> {
        const OP: &str = "hood.create_profile";
        let url = self.core.url(&["v1", "hood", "profiles"]);
        let reply = self.core.call(OP, Method::POST, url, Some(body)).await?;
        if reply.body_is_blank() {
            return Ok(reply.with(None));
        }
        let profile = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| object_with_id::<Profile>(&v));
        if profile.is_none() {
            tracing::debug!(
                vendor = "hood",
                op = OP,
                "create answered a body without a profile id"
            );
        }
        Ok(reply.with(profile))
    }

    /// `PATCH /v1/hood/profiles/{id}` → 204.
    pub async fn patch_profile(
        &self,
        id: &str,
        body: &PatchProfile,
    ) -> Result<VendorResponse<()>, VendorError> {
        let url = self.core.url(&["v1", "hood", "profiles", id]);
        let reply = self
            .core
            .call("hood.patch_profile", Method::PATCH, url, Some(body))
            .await?;
        Ok(reply.with(()))
    }

    /// `GET /v1/hood/profiles?email=eq:<value>` (or `mobile_phone_number=`) → array.
    pub async fn list_profiles(
        &self,
        filter: ProfileFilter<'_>,
    ) -> Result<VendorResponse<Vec<Profile>>, VendorError> {
        const OP: &str = "hood.list_profiles";
        let mut url = self.core.url(&["v1", "hood", "profiles"]);
        url.set_query(Some(&filter.query()));
        let reply = self.core.call::<()>(OP, Method::GET, url, None).await?;
        let list = match reply.json::<ProfileList>(Vendor::Hood, OP)? {
            ProfileList::Bare(v) | ProfileList::Wrapped { data: v } => v,
        };
        Ok(reply.with(list))
    }

    /// `POST /v1/hood/profile-properties` → 201 with the property (`None` if the body is
    /// missing or has no id).
    pub async fn create_profile_property(
        &self,
        body: &CreateProfileProperty,
    ) -> Result<VendorResponse<Option<ProfileProperty>>, VendorError> {
        let url = self.core.url(&["v1", "hood", "profile-properties"]);
        let reply = self
            .core
            .call(
                "hood.create_profile_property",
                Method::POST,
                url,
                Some(body),
            )
            .await?;
        let property = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .and_then(|v| object_with_id::<ProfileProperty>(&v));
        Ok(reply.with(property))
    }

    /// `GET /v1/hood/profile-properties` → array.
    pub async fn list_profile_properties(
        &self,
    ) -> Result<VendorResponse<Vec<ProfileProperty>>, VendorError> {
        const OP: &str = "hood.list_profile_properties";
        let url = self.core.url(&["v1", "hood", "profile-properties"]);
        let reply = self.core.call::<()>(OP, Method::GET, url, None).await?;
        let list = match reply.json::<PropertyList>(Vendor::Hood, OP)? {
            PropertyList::Bare(v) | PropertyList::Wrapped { data: v } => v,
        };
        Ok(reply.with(list))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_form_encoded() {
        assert_eq!(
            ProfileFilter::Email("john+doe@example.com").query(),
            "email=eq:john%2Bdoe%40example.com"
        );
        assert_eq!(
            ProfileFilter::MobilePhoneNumber("+49658245684").query(),
            "mobile_phone_number=eq:%2B49658245684"
        );
        assert_eq!(
            ProfileFilter::Email("a&b=c d").query(),
            "email=eq:a%26b%3Dc+d"
        );
    }

    #[test]
    fn filter_debug_hides_the_value() {
        assert!(!format!("{:?}", ProfileFilter::Email("x@y.z")).contains("x@y.z"));
    }

    #[test]
    fn config_deserialises_with_defaults_and_hides_the_token() {
        let c: HoodConfig =
            serde_json::from_str(r#"{"token":"tok-secret-1"}"#).expect("valid config");
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.http, HttpSettings::default());
        assert!(!format!("{c:?}").contains("tok-secret-1"));
        let c: HoodConfig = serde_json::from_str(
            r#"{"token":"t","base_url":"http://x","http":{"timeout_ms":200}}"#,
        )
        .expect("valid");
        assert_eq!(c.http.timeout_ms, 200);
        assert_eq!(
            c.http.connect_timeout_ms,
            HttpSettings::default().connect_timeout_ms
        );
    }
}
