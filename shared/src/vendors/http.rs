//! The HTTP plumbing every vendor client shares: one `reqwest::Client` per vendor, built
//! once (connection pool, timeouts, user agent, no redirects), auth headers marked
//! sensitive, and one `call` that sends JSON, parses rate-limit headers on every answer and
//! classifies failures into [`VendorError`].

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::Vendor;
use super::error::VendorError;
use super::rate_limit::RateLimitInfo;

/// `profile-relay/<version>`: lets vendors tell our traffic apart in their logs.
pub const USER_AGENT: &str = concat!("profile-relay/", env!("CARGO_PKG_VERSION"));

/// Timeouts and pool settings; the defaults suit a Lambda with a 30 s budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// TCP + TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Whole request timeout (connect, send, wait, read body).
    pub timeout_ms: u64,
    /// How long an idle pooled connection is kept for reuse.
    pub pool_idle_timeout_ms: u64,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout_ms: 3_000,
            timeout_ms: 10_000,
            pool_idle_timeout_ms: 60_000,
            pool_max_idle_per_host: 8,
        }
    }
}

/// Why a client could not be built (at start-up, from configuration).
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    /// The base URL does not parse, or is not https (plain http only to a loopback host).
    #[error(
        "{vendor}: base_url must be an absolute https URL (http only to 127.0.0.1, [::1] or localhost)"
    )]
    BaseUrl { vendor: Vendor },
    /// A credential holds characters HTTP headers cannot carry (the value is not shown).
    #[error("{vendor}: credential `{name}` is not a valid HTTP header value")]
    Credential { vendor: Vendor, name: &'static str },
    /// The settings themselves are unusable (the problem names fields, never secrets).
    #[error("{vendor}: {problem}")]
    Config { vendor: Vendor, problem: String },
    /// reqwest refused the settings (TLS backend initialisation).
    #[error("{vendor}: building the HTTP client failed: {source}")]
    Http {
        vendor: Vendor,
        #[source]
        source: reqwest::Error,
    },
}

/// A successful typed answer with the rate-limit headers it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct VendorResponse<T> {
    pub value: T,
    pub status: u16,
    pub rate_limit: RateLimitInfo,
}

/// A raw 2xx answer.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub rate_limit: RateLimitInfo,
    pub body: Bytes,
}

impl Reply {
    /// Parses the body as `T`.
    pub fn json<T: DeserializeOwned>(
        &self,
        vendor: Vendor,
        op: &'static str,
    ) -> Result<T, VendorError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| VendorError::unexpected_body(vendor, op, self.status, &e, self.rate_limit))
    }

    /// True when the body is empty or whitespace (Hood's 201 in the older docs).
    pub fn body_is_blank(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// Wraps `value` with this answer's status and rate-limit headers.
    pub fn with<T>(&self, value: T) -> VendorResponse<T> {
        VendorResponse {
            value,
            status: self.status.as_u16(),
            rate_limit: self.rate_limit,
        }
    }
}

/// Builds an auth header value, marked sensitive so `Debug` and HTTP/2 HPACK never expose it.
pub(crate) fn secret_header(
    vendor: Vendor,
    name: &'static str,
    value: &str,
) -> Result<HeaderValue, ClientBuildError> {
    let mut v =
        HeaderValue::from_str(value).map_err(|_| ClientBuildError::Credential { vendor, name })?;
    v.set_sensitive(true);
    Ok(v)
}

/// `(header name, secret)` pairs to send on every request.
pub(crate) fn auth_headers(
    vendor: Vendor,
    pairs: &[(&'static str, &SecretString, Option<&str>)],
) -> Result<HeaderMap, ClientBuildError> {
    let mut map = HeaderMap::new();
    for (name, secret, prefix) in pairs {
        let value = match prefix {
            Some(p) => format!("{p}{}", secret.expose_secret()),
            None => secret.expose_secret().to_owned(),
        };
        map.insert(
            HeaderName::from_static(name),
            secret_header(vendor, name, &value)?,
        );
    }
    Ok(map)
}

/// One vendor's HTTP client. Cheap to share (`reqwest::Client` is an `Arc` inside).
pub(crate) struct HttpCore {
    vendor: Vendor,
    client: reqwest::Client,
    base: Url,
    auth: HeaderMap,
    settings: HttpSettings,
}

impl std::fmt::Debug for HttpCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the auth headers nor reqwest's own Debug (it prints default headers).
        f.debug_struct("HttpCore")
            .field("vendor", &self.vendor)
            .field("base", &self.base.as_str())
            .field("settings", &self.settings)
            .field("auth", &"<redacted>")
            .finish()
    }
}

/// Whether `url` points at this machine: 127.0.0.0/8, `[::1]` or `localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// `base_url` parsed, if credentials may be sent to it: an absolute https URL, or plain
/// http only to this machine (sandboxes, mocks).
pub(crate) fn credential_safe_base(base_url: &str) -> Option<Url> {
    let base = Url::parse(base_url).ok()?;
    let allowed = match base.scheme() {
        "https" => true,
        "http" => is_loopback(&base),
        _ => false,
    };
    (allowed && !base.cannot_be_a_base()).then_some(base)
}

/// The HTTP client of an API we call with credentials: our user agent, JSON accepted,
/// `headers` on every request, the timeouts and pool of `settings`, and no redirects (the
/// APIs do not redirect; following one could carry credentials to another host).
pub(crate) fn api_client(
    settings: &HttpSettings,
    mut headers: HeaderMap,
) -> Result<reqwest::Client, reqwest::Error> {
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .default_headers(headers)
        .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
        .timeout(Duration::from_millis(settings.timeout_ms))
        .pool_idle_timeout(Duration::from_millis(settings.pool_idle_timeout_ms))
        .pool_max_idle_per_host(settings.pool_max_idle_per_host)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

impl HttpCore {
    pub fn new(
        vendor: Vendor,
        base_url: &str,
        auth: HeaderMap,
        settings: HttpSettings,
    ) -> Result<Self, ClientBuildError> {
        // Credentials travel in headers (`auth`, sent per request).
        let base = credential_safe_base(base_url).ok_or(ClientBuildError::BaseUrl { vendor })?;
        let client = api_client(&settings, HeaderMap::new())
            .map_err(|source| ClientBuildError::Http { vendor, source })?;
        Ok(HttpCore {
            vendor,
            client,
            base,
            auth,
            settings,
        })
    }

    /// The base URL plus `segments`, each percent-encoded as one path segment (so a
    /// member id holding `/` or `?` stays inside its segment).
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        {
            // `cannot_be_a_base` was rejected in `new`, so this cannot fail.
            if let Ok(mut path) = url.path_segments_mut() {
                path.pop_if_empty().extend(segments);
            }
        }
        url
    }

    /// Sends one request and returns the 2xx answer, or the classified failure. Logs the
    /// operation name, status, duration and rate-limit budget; never the URL or a body.
    pub async fn call<B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        method: Method,
        url: Url,
        body: Option<&B>,
    ) -> Result<Reply, VendorError> {
        let vendor = self.vendor;
        let mut request = self.client.request(method, url).headers(self.auth.clone());
        if let Some(b) = body {
            // `json` sets `Content-Type: application/json`.
            request = request.json(b);
        }
        let started = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = VendorError::from_transport(vendor, op, &e);
                tracing::warn!(vendor = %vendor, op, elapsed_ms = started.elapsed().as_millis() as u64, error = %err, "vendor call failed");
                return Err(err);
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let rate_limit = RateLimitInfo::from_headers(&headers);
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let mut err = VendorError::from_transport(vendor, op, &e);
                if let VendorError::Transient { rate_limit: rl, .. } = &mut err {
                    *rl = Some(rate_limit);
                }
                tracing::warn!(vendor = %vendor, op, status = status.as_u16(), error = %err, "vendor answer could not be read");
                return Err(err);
            }
        };
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if status.is_success() {
            tracing::debug!(
                vendor = %vendor,
                op,
                status = status.as_u16(),
                elapsed_ms,
                ratelimit_remaining = rate_limit.remaining,
                ratelimit_limit = rate_limit.limit,
                "vendor call"
            );
            Ok(Reply {
                status,
                rate_limit,
                body,
            })
        } else {
            let err = VendorError::from_response(vendor, op, status, &headers, &body);
            tracing::warn!(
                vendor = %vendor,
                op,
                status = status.as_u16(),
                elapsed_ms,
                class = ?err.class(),
                ratelimit_remaining = rate_limit.remaining,
                error = %err,
                "vendor call refused"
            );
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(base: &str) -> HttpCore {
        HttpCore::new(
            Vendor::Channelio,
            base,
            HeaderMap::new(),
            HttpSettings::default(),
        )
        .expect("valid base")
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        let c = core("https://api.channel.io");
        assert_eq!(
            c.url(&["open", "v5", "users", "@a/b?c#d e%"]).as_str(),
            "https://api.channel.io/open/v5/users/@a%2Fb%3Fc%23d%20e%25"
        );
    }

    #[test]
    fn base_path_prefix_is_kept() {
        let c = core("http://127.0.0.1:9/prefix/");
        assert_eq!(
            c.url(&["api", "v1", "profile"]).as_str(),
            "http://127.0.0.1:9/prefix/api/v1/profile"
        );
    }

    #[test]
    fn https_anywhere_and_http_only_to_this_machine() {
        for good in [
            "https://api.ocamba.com",
            "http://127.0.0.1:9",
            "http://127.8.0.1:9/prefix/",
            "http://[::1]:9",
            "http://localhost:8080",
        ] {
            assert!(
                HttpCore::new(
                    Vendor::Hood,
                    good,
                    HeaderMap::new(),
                    HttpSettings::default()
                )
                .is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for bad in [
            "not a url",
            "ftp://x",
            "mailto:a@b",
            "http://api.ocamba.com",
            "http://10.0.0.5:8080",
            "http://localhost.example.com",
        ] {
            assert!(matches!(
                HttpCore::new(Vendor::Hood, bad, HeaderMap::new(), HttpSettings::default()),
                Err(ClientBuildError::BaseUrl {
                    vendor: Vendor::Hood
                })
            ));
        }
    }

    #[test]
    fn secret_headers_are_sensitive_and_hidden_in_debug() {
        let secret = SecretString::from("tok-123");
        let map = auth_headers(Vendor::Hood, &[("authorization", &secret, Some("Bearer "))])
            .expect("valid");
        let v = map.get("authorization").expect("present");
        assert!(v.is_sensitive());
        assert_eq!(v.to_str().expect("ascii"), "Bearer tok-123");
        assert!(!format!("{map:?}").contains("tok-123"));
    }

    #[test]
    fn control_characters_in_credentials_are_refused_without_echo() {
        let secret = SecretString::from("bad\ntoken");
        let err = auth_headers(Vendor::Omnivibe, &[("api_access_token", &secret, None)])
            .expect_err("invalid");
        assert_eq!(
            err.to_string(),
            "omnivibe: credential `api_access_token` is not a valid HTTP header value"
        );
    }
}
