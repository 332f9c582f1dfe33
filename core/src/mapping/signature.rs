//! How a source signs its requests, as the mapping file names it. The schemes themselves —
//! verifying and signing — live with ingest (`relay-shared`'s `ingress::signature`); this is
//! the configuration only, so mappings load without any crypto or HTTP code.

use http::HeaderName;
use serde::Deserialize;

/// Text encoding of a MAC tag (`generic_hmac`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Lowercase hex when signing; either case accepted when verifying.
    Hex,
    /// Standard base64 alphabet with padding (RFC 4648 §4).
    Base64,
}

/// How a source signs its requests, as written in config, e.g. `{ scheme = "typeform" }` or
/// `{ scheme = "generic_hmac", header = "x-signature", encoding = "hex", prefix = "sha256=" }`.
/// Unknown keys are refused (a `secret = ...` here would put a secret into a config file).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawScheme")]
pub enum SignatureScheme {
    /// Standard Webhooks (`webhook-id`/`-timestamp`/`-signature`, `whsec_` secrets).
    StandardWebhooks,
    /// HubSpot signature v3 (config name `hubspot` or `hubspot_v3`).
    Hubspot,
    /// Typeform `sha256=` base64 body MAC.
    Typeform,
    /// Tally base64 body MAC.
    Tally,
    /// Webflow hex MAC over `timestamp:body`.
    Webflow,
    /// HTTP Basic credentials (Pipedrive); secrets are `user:password` (config name
    /// `http_basic` or `basic`).
    HttpBasic,
    /// Any body HMAC-SHA256 in one header.
    GenericHmac {
        /// Header carrying the signature.
        header: HeaderName,
        /// Hex or base64.
        encoding: Encoding,
        /// Optional text before the tag, e.g. `sha256=`.
        prefix: Option<String>,
    },
}

/// The config table as written; [`SignatureScheme`] is built from it so that every scheme,
/// not only `generic_hmac`, refuses keys it does not use (serde's `deny_unknown_fields`
/// does not reach unit variants of internally tagged enums).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheme {
    scheme: String,
    header: Option<String>,
    encoding: Option<Encoding>,
    prefix: Option<String>,
}

impl TryFrom<RawScheme> for SignatureScheme {
    type Error = String;

    fn try_from(raw: RawScheme) -> Result<Self, Self::Error> {
        let plain = match raw.scheme.as_str() {
            "standard_webhooks" => Some(Self::StandardWebhooks),
            "hubspot" | "hubspot_v3" => Some(Self::Hubspot),
            "typeform" => Some(Self::Typeform),
            "tally" => Some(Self::Tally),
            "webflow" => Some(Self::Webflow),
            "http_basic" | "basic" => Some(Self::HttpBasic),
            "generic_hmac" => None,
            other => return Err(format!("unknown signature scheme `{other}`")),
        };
        match plain {
            Some(scheme) => {
                if raw.header.is_some() || raw.encoding.is_some() || raw.prefix.is_some() {
                    return Err(format!(
                        "scheme `{}` takes no header, encoding or prefix",
                        raw.scheme
                    ));
                }
                Ok(scheme)
            }
            None => {
                let header = raw.header.ok_or("generic_hmac needs `header`")?;
                let header = HeaderName::try_from(header.as_str())
                    .map_err(|_| format!("`{header}` is not a valid HTTP header name"))?;
                let encoding = raw
                    .encoding
                    .ok_or("generic_hmac needs `encoding` (hex or base64)")?;
                Ok(Self::GenericHmac {
                    header,
                    encoding,
                    prefix: raw.prefix,
                })
            }
        }
    }
}

impl SignatureScheme {
    /// The config name (`scheme = "..."`), for logs and errors.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::StandardWebhooks => "standard_webhooks",
            Self::Hubspot => "hubspot",
            Self::Typeform => "typeform",
            Self::Tally => "tally",
            Self::Webflow => "webflow",
            Self::HttpBasic => "http_basic",
            Self::GenericHmac { .. } => "generic_hmac",
        }
    }
}
