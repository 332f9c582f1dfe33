//! The three vendor APIs (Ocamba Hood, Channel.io, Omnivibe with its Chatwoot contacts).
//!
//! Each vendor has a `wire` module (the exact request and response bodies of
//! `../shared/vendor-docs/`, pure data, used by `plan`), a `client` with one typed method
//! per endpoint, and a `sync` that applies the vendor's plan through [`VendorSync`].
//! Shared by all: `http` (one reqwest client per vendor, auth headers marked sensitive),
//! `error` (one classification, [`VendorError`]), `rate_limit` (headers parsed on every
//! answer), `sync` (outcome, error, the [`CallGate`] pacing hook) and `fake` (an in-memory
//! [`VendorSync`] for tests).

pub mod channelio;
pub mod chatwoot;
pub mod error;
pub mod fake;
pub mod hood;
pub mod http;
pub mod omnivibe;
pub mod rate_limit;
pub mod sync;

pub use channelio::{ChannelClient, ChannelConfig};
pub use chatwoot::{ChatwootClient, ChatwootConfig};
pub use error::{ErrorClass, TransientCause, VendorError};
pub use fake::FakeVendor;
pub use hood::{HoodClient, HoodConfig};
pub use http::{ClientBuildError, HttpSettings, USER_AGENT, VendorResponse};
pub use omnivibe::{OmnivibeClient, OmnivibeConfig};
pub use rate_limit::{RateLimitInfo, Reset, RetryAfter};
pub use sync::{CallGate, OpenGate, SyncError, SyncOutcome, VendorSync};

/// The vendors profile-relay syncs into. The string form is used in config, queue messages
/// and store keys, so it never changes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// Ocamba Hood: profiles and custom profile properties.
    Hood,
    /// Channel.io Open API v5: users.
    Channelio,
    /// Omnivibe: the agent profile of the token's owner.
    Omnivibe,
    /// Chatwoot contacts on the Omnivibe host.
    Chatwoot,
}

impl Vendor {
    /// Every vendor, in a fixed order.
    pub const ALL: [Vendor; 4] = [
        Vendor::Hood,
        Vendor::Channelio,
        Vendor::Omnivibe,
        Vendor::Chatwoot,
    ];

    /// The stable lowercase name (`hood`, `channelio`, `omnivibe`, `chatwoot`).
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Hood => "hood",
            Vendor::Channelio => "channelio",
            Vendor::Omnivibe => "omnivibe",
            Vendor::Chatwoot => "chatwoot",
        }
    }
}

impl std::fmt::Display for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Vendor {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Vendor::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown vendor `{s}` (known: hood, channelio, omnivibe, chatwoot)")
            })
    }
}

/// Serde helpers for ids that vendors send as strings or numbers.
pub(crate) mod wire_id {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum StringOrNumber {
        S(String),
        N(serde_json::Number),
    }

    /// Accepts `"1000105"` and `1000105` alike.
    pub fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match StringOrNumber::deserialize(d)? {
            StringOrNumber::S(s) => s,
            StringOrNumber::N(n) => n.to_string(),
        })
    }
}
