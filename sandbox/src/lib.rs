//! Sandbox vendors for `relay demo` and tests: strict in-process HTTP mocks of Ocamba Hood,
//! Channel.io, and the Omnivibe host (agent profile and Chatwoot contacts) that enforce
//! the rules of `../shared/vendor-docs/` and `vendor-notes.md` and answer like the vendor
//! would (its error shapes and status codes), so a run proves the relay's requests valid.
//!
//! One server on `127.0.0.1:<port>` serves every vendor under its own base path, so each
//! relay client gets a base URL whose paths are exactly the vendor's:
//!
//! | vendor    | base URL                  | paths                                      |
//! |-----------|---------------------------|--------------------------------------------|
//! | Hood      | `http://127.0.0.1:P/hood`      | `/v1/hood/profiles`, `/v1/hood/profile-properties` |
//! | Channel.io| `http://127.0.0.1:P/channelio` | `/open/v5/users/...`                  |
//! | Omnivibe  | `http://127.0.0.1:P/omnivibe`  | `/api/v1/profile`                     |
//! | Chatwoot  | `http://127.0.0.1:P/omnivibe`  | `/api/v1/accounts/{id}/contacts...` (same host as Omnivibe) |
//!
//! Every request is recorded ([`RecordedRequest`]); every broken rule is a [`Violation`]
//! (the demo prints their count, which must be 0). Stored state (profiles, properties,
//! users, agent, contacts) is readable through accessors. Personal data stays in memory;
//! `Debug` of the sandbox and of its records never prints bodies, paths or queries.
//!
//! Hand-written on axum rather than `wiremock`: wiremock matches requests to canned
//! answers, while these vendors must keep state (ids, uniqueness, `profileOnce`), validate
//! bodies field by field and count rate-limit windows across endpoints.

pub mod samples;

mod channelio;
mod chatwoot;
mod checks;
mod hood;
mod host;
mod omnivibe;
mod record;
mod window;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::middleware;
use secrecy::SecretString;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use channelio::ChannelUser;
pub use chatwoot::ChatwootContact;
pub use hood::{BURST_PER_SECOND, HoodProfile, HoodProperty, STEADY_PER_MINUTE};
pub use host::THROTTLE_PER_MINUTE;
pub use omnivibe::{Agent, PASSWORD_FIELDS};
pub use record::{RecordedRequest, Rule, Violation};

use record::Journal;
use relay_shared::store::clock::{Clock, SystemClock};
use relay_shared::vendors::{ChannelConfig, ChatwootConfig, HoodConfig, OmnivibeConfig, Vendor};
use window::{FixedWindows, Window};

pub(crate) const HOOD_PREFIX: &str = "/hood";
pub(crate) const CHANNELIO_PREFIX: &str = "/channelio";
pub(crate) const OMNIVIBE_PREFIX: &str = "/omnivibe";

/// The base path `vendor` is served under.
pub(crate) fn prefix_of(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Hood => HOOD_PREFIX,
        Vendor::Channelio => CHANNELIO_PREFIX,
        Vendor::Omnivibe | Vendor::Chatwoot => OMNIVIBE_PREFIX,
    }
}

/// How the sandbox behaves; the defaults are the vendors' documented behaviour.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// Hood's `POST /v1/hood/profiles` answers 201 with the stored profile (newer docs,
    /// `true`) or 201 without a body (older docs, `false`).
    pub hood_create_answers_profile: bool,
    /// Custom property labels Hood already has defined at start.
    pub hood_properties: Vec<String>,
    /// Hood's burst limit per fixed 1 s window.
    pub hood_per_second: u32,
    /// Hood's steady limit per fixed 60 s window.
    pub hood_per_minute: u32,
    /// Channel.io requests per fixed minute (the pages publish no number; generous).
    pub channelio_per_minute: u32,
    /// The Chatwoot account the token may use.
    pub chatwoot_account_id: u64,
    /// Where "now" comes from (rate-limit windows, timestamps); a `ManualClock` makes
    /// rate-limit tests deterministic.
    pub clock: Arc<dyn Clock>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            hood_create_answers_profile: true,
            hood_properties: Vec::new(),
            hood_per_second: BURST_PER_SECOND,
            hood_per_minute: STEADY_PER_MINUTE,
            channelio_per_minute: 1_000,
            chatwoot_account_id: 1,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The credentials the sandbox expects, fresh random values per start. `Debug` hides them.
#[derive(Clone)]
pub struct Credentials {
    /// Hood: `Authorization: Bearer <hood_token>`.
    pub hood_token: SecretString,
    /// Channel.io: `x-access-key`.
    pub channel_access_key: SecretString,
    /// Channel.io: `x-access-secret`.
    pub channel_access_secret: SecretString,
    /// Omnivibe agent profile: `api_access_token` of the agent.
    pub omnivibe_token: SecretString,
    /// Chatwoot contacts: `api_access_token` of a user of `chatwoot_account_id`.
    pub chatwoot_token: SecretString,
    pub chatwoot_account_id: u64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("secrets", &relay_shared::model::redact::REDACTED)
            .field("chatwoot_account_id", &self.chatwoot_account_id)
            .finish()
    }
}

impl Credentials {
    fn generate(chatwoot_account_id: u64) -> Self {
        let token = |prefix: &str| {
            SecretString::from(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()))
        };
        Credentials {
            hood_token: token("sbx-hood"),
            channel_access_key: token("sbx-chkey"),
            channel_access_secret: token("sbx-chsecret"),
            omnivibe_token: token("sbx-omni"),
            chatwoot_token: token("sbx-cw"),
            chatwoot_account_id,
        }
    }
}

/// State shared by every handler.
pub(crate) struct Shared {
    pub clock: Arc<dyn Clock>,
    pub credentials: Credentials,
    pub journal: Journal,
    pub hood: hood::Hood,
    pub channel: channelio::Channel,
    pub omnivibe: omnivibe::Omnivibe,
    pub chatwoot: chatwoot::Chatwoot,
    /// The Omnivibe host's throttle, shared by agent profile and contacts.
    pub host_limits: Mutex<FixedWindows>,
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("sandbox: cannot bind 127.0.0.1:0: {0}")]
    Bind(#[source] std::io::Error),
}

/// The running sandbox. Dropping it stops the server too; [`Sandbox::shutdown`] also
/// waits for it.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("addr", &self.addr)
            .field("requests", &self.shared.journal.len())
            .field("violations", &self.shared.journal.violation_count())
            .finish_non_exhaustive()
    }
}

fn app(shared: &Arc<Shared>) -> Router {
    Router::new()
        .nest(HOOD_PREFIX, hood::router(shared.clone()))
        .nest(CHANNELIO_PREFIX, channelio::router(shared.clone()))
        .nest(OMNIVIBE_PREFIX, omnivibe_host(shared.clone()))
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            record::record,
        ))
}

impl Sandbox {
    /// Starts the sandbox with the documented behaviour on `127.0.0.1:<free port>`.
    pub async fn start() -> Result<Sandbox, SandboxError> {
        Self::start_with(SandboxOptions::default()).await
    }

    /// Starts the sandbox with `options`.
    pub async fn start_with(options: SandboxOptions) -> Result<Sandbox, SandboxError> {
        let now = options.clock.now();
        let shared = Arc::new(Shared {
            credentials: Credentials::generate(options.chatwoot_account_id),
            journal: Journal::default(),
            hood: hood::Hood::new(
                options.hood_create_answers_profile,
                &options.hood_properties,
                (options.hood_per_second, options.hood_per_minute),
                now,
            ),
            channel: channelio::Channel::new(options.channelio_per_minute),
            omnivibe: omnivibe::Omnivibe::new(options.chatwoot_account_id, now),
            chatwoot: chatwoot::Chatwoot::new(options.chatwoot_account_id),
            host_limits: Mutex::new(FixedWindows::new(vec![Window::new(
                60_000,
                THROTTLE_PER_MINUTE,
            )])),
            clock: options.clock,
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(SandboxError::Bind)?;
        let addr = listener.local_addr().map_err(SandboxError::Bind)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = app(&shared);
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    // A dropped sender also stops the server.
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "sandbox server stopped with an error");
            }
        });
        tracing::info!(%addr, "sandbox vendors listening");
        Ok(Sandbox {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// Stops the server and waits until it has.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::warn!(error = %e, "sandbox task ended abnormally");
        }
    }

    /// The socket the sandbox listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL of `vendor` (Omnivibe and Chatwoot share one host).
    pub fn base_url(&self, vendor: Vendor) -> String {
        format!("http://{}{}", self.addr, prefix_of(vendor))
    }

    /// `http://127.0.0.1:P/hood`.
    pub fn hood_url(&self) -> String {
        self.base_url(Vendor::Hood)
    }

    /// `http://127.0.0.1:P/channelio`.
    pub fn channelio_url(&self) -> String {
        self.base_url(Vendor::Channelio)
    }

    /// `http://127.0.0.1:P/omnivibe`.
    pub fn omnivibe_url(&self) -> String {
        self.base_url(Vendor::Omnivibe)
    }

    /// `http://127.0.0.1:P/omnivibe` (the Omnivibe host).
    pub fn chatwoot_url(&self) -> String {
        self.base_url(Vendor::Chatwoot)
    }

    /// The credentials the sandbox accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.shared.credentials
    }

    /// A Hood client configuration pointed at the sandbox.
    pub fn hood_config(&self) -> HoodConfig {
        HoodConfig::new(self.hood_url(), self.credentials().hood_token.clone())
    }

    /// A Channel.io client configuration pointed at the sandbox.
    pub fn channelio_config(&self) -> ChannelConfig {
        let c = self.credentials();
        ChannelConfig::new(
            self.channelio_url(),
            c.channel_access_key.clone(),
            c.channel_access_secret.clone(),
        )
    }

    /// The staff id whose agent the sandbox's Omnivibe token belongs to (the sample
    /// `StaffProfileUpdated` event's `staffId`).
    pub const OMNIVIBE_STAFF_ID: &'static str = "s_7";

    /// An Omnivibe client configuration pointed at the sandbox: its one agent.
    pub fn omnivibe_config(&self) -> OmnivibeConfig {
        OmnivibeConfig::new(
            self.omnivibe_url(),
            Self::OMNIVIBE_STAFF_ID,
            self.credentials().omnivibe_token.clone(),
        )
    }

    /// A Chatwoot client configuration pointed at the sandbox.
    pub fn chatwoot_config(&self) -> ChatwootConfig {
        let c = self.credentials();
        ChatwootConfig::new(
            self.chatwoot_url(),
            c.chatwoot_token.clone(),
            c.chatwoot_account_id,
        )
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.journal.requests()
    }

    /// The requests received by `vendor`.
    pub fn requests_of(&self, vendor: Vendor) -> Vec<RecordedRequest> {
        let mut all = self.requests();
        all.retain(|r| r.vendor == vendor);
        all
    }

    /// Every broken rule, in arrival order.
    pub fn violations(&self) -> Vec<Violation> {
        self.shared.journal.violations()
    }

    /// How many requests broke a rule.
    pub fn violation_count(&self) -> usize {
        self.shared.journal.violation_count()
    }

    /// How many requests were refused for exceeding a rate limit (429).
    pub fn rate_limit_violations(&self) -> usize {
        self.violations()
            .iter()
            .filter(|v| v.rule == Rule::RateLimit)
            .count()
    }

    /// Hood's profiles, in creation order.
    pub fn hood_profiles(&self) -> Vec<HoodProfile> {
        self.shared.hood.profiles()
    }

    /// Hood's custom profile properties, in creation order.
    pub fn hood_properties(&self) -> Vec<HoodProperty> {
        self.shared.hood.properties()
    }

    /// Channel.io's users, in creation order.
    pub fn channelio_users(&self) -> Vec<ChannelUser> {
        self.shared.channel.users()
    }

    /// The Omnivibe agent who owns the token.
    pub fn omnivibe_agent(&self) -> Agent {
        self.shared.omnivibe.agent()
    }

    /// Chatwoot's contacts of the account, in creation order.
    pub fn chatwoot_contacts(&self) -> Vec<ChatwootContact> {
        self.shared.chatwoot.contacts()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The Omnivibe host's routes: agent profile and contacts, behind the host's throttle.
fn omnivibe_host(shared: Arc<Shared>) -> Router {
    omnivibe::routes()
        .merge(chatwoot::routes())
        .fallback(host::unknown_path)
        .method_not_allowed_fallback(host::unknown_method)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            host::throttle,
        ))
        .layer(middleware::from_fn(record::tag_route))
        .with_state(shared)
}
