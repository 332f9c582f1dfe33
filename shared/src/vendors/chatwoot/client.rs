//! Chatwoot contacts client on the Omnivibe host (`vendor-notes.md`).
//!
//! Response shapes: the vendor pages do not document them. Chatwoot's own views wrap every
//! answer in `payload`: create answers `{"payload": {"contact": {...}, "contact_inbox":
//! {...}}}`, update `{"payload": {...contact}}`, search `{"meta": {...}, "payload":
//! [...]}`. Each parser accepts the wrapped shape and the bare one (a contact object or an
//! array), so a proxy or an older version that unwraps still works.

use std::sync::Arc;

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use super::wire::{Contact, ContactBody};
use crate::vendors::Vendor;
use crate::vendors::error::VendorError;
use crate::vendors::http::{
    ClientBuildError, HttpCore, HttpSettings, Reply, VendorResponse, auth_headers,
};
use crate::vendors::sync::{CallGate, open_gate};

/// The Omnivibe host, where the Chatwoot API lives.
pub const DEFAULT_BASE_URL: &str = "https://app.omnivibe.com.br";

/// Chatwoot connection settings (`api_access_token` with access to `account_id`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatwootConfig {
    #[serde(default = "default_base_url")]
    pub base_url: String,
    pub api_access_token: SecretString,
    pub account_id: u64,
    #[serde(default)]
    pub http: HttpSettings,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl ChatwootConfig {
    /// Settings with the default timeouts.
    pub fn new(
        base_url: impl Into<String>,
        api_access_token: SecretString,
        account_id: u64,
    ) -> Self {
        ChatwootConfig {
            base_url: base_url.into(),
            api_access_token,
            account_id,
            http: HttpSettings::default(),
        }
    }
}

impl std::fmt::Debug for ChatwootConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatwootConfig")
            .field("base_url", &self.base_url)
            .field("api_access_token", &crate::model::redact::REDACTED)
            .field("account_id", &self.account_id)
            .field("http", &self.http)
            .finish()
    }
}

/// Chatwoot contacts of one account. Built once per process.
pub struct ChatwootClient {
    pub(super) core: HttpCore,
    pub(super) gate: Arc<dyn CallGate>,
    account_id: String,
}

impl std::fmt::Debug for ChatwootClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatwootClient")
            .field("core", &self.core)
            .field("account_id", &self.account_id)
            .finish_non_exhaustive()
    }
}

/// The contact of a create/update answer: `payload.contact`, `payload` or the root.
fn contact_in(v: &Value) -> Option<Contact> {
    [v.pointer("/payload/contact"), v.get("payload"), Some(v)]
        .into_iter()
        .flatten()
        .filter(|o| o.get("id").is_some())
        .find_map(|o| serde_json::from_value(o.clone()).ok())
}

/// The contacts of a search answer: `payload` array or a bare array.
fn contacts_in(v: &Value) -> Option<Vec<Contact>> {
    [v.get("payload"), Some(v)]
        .into_iter()
        .flatten()
        .filter(|a| a.is_array())
        .find_map(|a| serde_json::from_value(a.clone()).ok())
}

fn no_contact(op: &'static str, reply: &Reply, what: &str) -> VendorError {
    VendorError::UnexpectedResponse {
        vendor: Vendor::Chatwoot,
        op,
        status: reply.status.as_u16(),
        detail: format!("no {what} in the answer"),
        rate_limit: reply.rate_limit,
    }
}

impl ChatwootClient {
    pub fn new(config: &ChatwootConfig) -> Result<Self, ClientBuildError> {
        let auth = auth_headers(
            Vendor::Chatwoot,
            &[("api_access_token", &config.api_access_token, None)],
        )?;
        Ok(ChatwootClient {
            core: HttpCore::new(Vendor::Chatwoot, &config.base_url, auth, config.http)?,
            gate: open_gate(),
            account_id: config.account_id.to_string(),
        })
    }

    /// Paces every call of [`crate::vendors::VendorSync::sync`] through `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn CallGate>) -> Self {
        self.gate = gate;
        self
    }

    fn contacts_url(&self, tail: &[&str]) -> url::Url {
        let mut segments = vec![
            "api",
            "v1",
            "accounts",
            self.account_id.as_str(),
            "contacts",
        ];
        segments.extend_from_slice(tail);
        self.core.url(&segments)
    }

    /// `POST /api/v1/accounts/{account_id}/contacts`.
    pub async fn create_contact(
        &self,
        body: &ContactBody,
    ) -> Result<VendorResponse<Contact>, VendorError> {
        const OP: &str = "chatwoot.create_contact";
        let reply = self
            .core
            .call(OP, Method::POST, self.contacts_url(&[]), Some(body))
            .await?;
        let v: Value = reply.json(Vendor::Chatwoot, OP)?;
        let contact = contact_in(&v).ok_or_else(|| no_contact(OP, &reply, "contact"))?;
        Ok(reply.with(contact))
    }

    /// `PUT /api/v1/accounts/{account_id}/contacts/{id}`.
    pub async fn update_contact(
        &self,
        id: u64,
        body: &ContactBody,
    ) -> Result<VendorResponse<Contact>, VendorError> {
        const OP: &str = "chatwoot.update_contact";
        let id = id.to_string();
        let reply = self
            .core
            .call(OP, Method::PUT, self.contacts_url(&[&id]), Some(body))
            .await?;
        let v: Value = reply.json(Vendor::Chatwoot, OP)?;
        let contact = contact_in(&v).ok_or_else(|| no_contact(OP, &reply, "contact"))?;
        Ok(reply.with(contact))
    }

    /// `GET /api/v1/accounts/{account_id}/contacts/search?q=<query>`. Chatwoot's search is
    /// a substring match: callers pick the exact hit ([`Contact::matches_exactly`]).
    pub async fn search_contacts(
        &self,
        query: &str,
    ) -> Result<VendorResponse<Vec<Contact>>, VendorError> {
        const OP: &str = "chatwoot.search_contacts";
        let mut url = self.contacts_url(&["search"]);
        url.query_pairs_mut().append_pair("q", query);
        let reply = self.core.call::<()>(OP, Method::GET, url, None).await?;
        let v: Value = reply.json(Vendor::Chatwoot, OP)?;
        let contacts = contacts_in(&v).ok_or_else(|| no_contact(OP, &reply, "contact list"))?;
        Ok(reply.with(contacts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn contact_shapes() {
        let wrapped = json!({"payload": {"contact": {"id": 5, "email": "a@b.c"}, "contact_inbox": {"inbox": null}}});
        assert_eq!(contact_in(&wrapped).map(|c| c.id), Some(5));
        assert_eq!(
            contact_in(&json!({"payload": {"id": 6}})).map(|c| c.id),
            Some(6)
        );
        assert_eq!(
            contact_in(&json!({"id": 7, "name": "x"})).map(|c| c.id),
            Some(7)
        );
        assert_eq!(contact_in(&json!({"payload": {}})), None);
    }

    #[test]
    fn search_shapes() {
        let ids = |v: Value| contacts_in(&v).map(|cs| cs.iter().map(|c| c.id).collect::<Vec<_>>());
        assert_eq!(
            ids(json!({"meta": {"count": 2}, "payload": [{"id": 1}, {"id": 2}]})),
            Some(vec![1, 2])
        );
        assert_eq!(ids(json!([{"id": 3}])), Some(vec![3]));
        assert_eq!(ids(json!({"payload": {"id": 3}})), None);
    }
}
