//! Wiremock helpers for the vendor client tests: fixed fake credentials, clients pointed at
//! a mock server, matchers for the exact raw query and for the shared request headers, and
//! a `tracing` writer that captures log output into a buffer.

use std::io;
use std::sync::{Arc, Mutex};

use relay_shared::vendors::{
    ChannelClient, ChannelConfig, ChatwootClient, ChatwootConfig, HoodClient, HoodConfig,
    HttpSettings, OmnivibeClient, OmnivibeConfig, USER_AGENT,
};
use secrecy::SecretString;
use wiremock::matchers::header;
use wiremock::{Match, MockBuilder, MockServer, Request};

/// Fake credentials: distinctive strings so a leak is easy to grep for.
pub const HOOD_TOKEN: &str = "hood-tok-7f3a9c";
pub const CHANNEL_KEY: &str = "chan-key-51be02";
pub const CHANNEL_SECRET: &str = "chan-secret-9d4e77";
pub const OMNIVIBE_TOKEN: &str = "omni-tok-c0ffee";
pub const CHATWOOT_TOKEN: &str = "cw-tok-a11ce5";
pub const CHATWOOT_ACCOUNT: u64 = 7;

/// Settings for tests: the defaults, optionally with a short total timeout.
pub fn settings(timeout_ms: Option<u64>) -> HttpSettings {
    let mut s = HttpSettings::default();
    if let Some(t) = timeout_ms {
        s.timeout_ms = t;
    }
    s
}

pub fn hood_config(server: &MockServer) -> HoodConfig {
    HoodConfig::new(server.uri(), SecretString::from(HOOD_TOKEN))
}

pub fn hood(server: &MockServer) -> HoodClient {
    HoodClient::new(&hood_config(server)).expect("valid hood config")
}

pub fn channel_config(server: &MockServer) -> ChannelConfig {
    ChannelConfig::new(
        server.uri(),
        SecretString::from(CHANNEL_KEY),
        SecretString::from(CHANNEL_SECRET),
    )
}

pub fn channel(server: &MockServer) -> ChannelClient {
    ChannelClient::new(&channel_config(server)).expect("valid channel.io config")
}

pub fn omnivibe_config(server: &MockServer) -> OmnivibeConfig {
    OmnivibeConfig::new(server.uri(), "s_7", SecretString::from(OMNIVIBE_TOKEN))
}

pub fn omnivibe(server: &MockServer) -> OmnivibeClient {
    OmnivibeClient::new(&omnivibe_config(server)).expect("valid omnivibe config")
}

pub fn chatwoot_config(server: &MockServer) -> ChatwootConfig {
    ChatwootConfig::new(
        server.uri(),
        SecretString::from(CHATWOOT_TOKEN),
        CHATWOOT_ACCOUNT,
    )
}

pub fn chatwoot(server: &MockServer) -> ChatwootClient {
    ChatwootClient::new(&chatwoot_config(server)).expect("valid chatwoot config")
}

/// Adds the headers every vendor request carries: user agent and JSON accept.
pub fn common(mock: MockBuilder) -> MockBuilder {
    mock.and(header("user-agent", USER_AGENT))
        .and(header("accept", "application/json"))
}

/// Adds `Content-Type: application/json` (requests with a body).
pub fn json_body(mock: MockBuilder) -> MockBuilder {
    common(mock).and(header("content-type", "application/json"))
}

pub fn hood_auth(mock: MockBuilder) -> MockBuilder {
    mock.and(header(
        "authorization",
        format!("Bearer {HOOD_TOKEN}").as_str(),
    ))
}

pub fn channel_auth(mock: MockBuilder) -> MockBuilder {
    mock.and(header("x-access-key", CHANNEL_KEY))
        .and(header("x-access-secret", CHANNEL_SECRET))
}

pub fn omnivibe_auth(mock: MockBuilder) -> MockBuilder {
    mock.and(header("api_access_token", OMNIVIBE_TOKEN))
}

pub fn chatwoot_auth(mock: MockBuilder) -> MockBuilder {
    mock.and(header("api_access_token", CHATWOOT_TOKEN))
}

/// Matches the raw (still encoded) query string exactly.
pub struct RawQuery(pub &'static str);

impl Match for RawQuery {
    fn matches(&self, request: &Request) -> bool {
        request.url.query() == Some(self.0)
    }
}

/// Matches requests without a body (GETs must not send one).
pub struct NoBody;

impl Match for NoBody {
    fn matches(&self, request: &Request) -> bool {
        request.body.is_empty() && !request.headers.contains_key("content-type")
    }
}

/// A `tracing_subscriber` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    /// Everything written so far.
    pub fn contents(&self) -> String {
        let buf = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

impl io::Write for Capture {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
