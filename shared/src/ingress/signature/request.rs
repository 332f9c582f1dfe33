//! The parts of an inbound HTTP request a signature can cover, borrowed from whatever
//! framework received it, so verification needs no HTTP server.

use http::{HeaderMap, HeaderName, Method};

use super::SignatureError;

/// An inbound request as the sender sent it.
#[derive(Clone, Copy)]
pub struct InboundRequest<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// The full URI the sender called: `scheme://host/path?query`, query in sent order. Only
    /// HubSpot signs it; behind API Gateway it must be rebuilt from the public base URL.
    pub uri: &'a str,
    /// All request headers.
    pub headers: &'a HeaderMap,
    /// The raw body bytes, before any parsing.
    pub body: &'a [u8],
}

impl<'a> InboundRequest<'a> {
    /// Bundles the parts of a request.
    #[must_use]
    pub fn new(method: &'a Method, uri: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        Self {
            method,
            uri,
            headers,
            body,
        }
    }

    /// The first value of `name` as visible ASCII, trimmed.
    pub(crate) fn header(&self, name: &HeaderName) -> Result<&'a str, SignatureError> {
        let value = self
            .headers
            .get(name)
            .ok_or_else(|| SignatureError::Missing {
                header: name.clone(),
            })?;
        let text = value
            .to_str()
            .map_err(|_| SignatureError::malformed(name, "not visible ASCII"))?
            .trim();
        if text.is_empty() {
            return Err(SignatureError::malformed(name, "empty"));
        }
        Ok(text)
    }
}

impl std::fmt::Debug for InboundRequest<'_> {
    // Headers carry credentials and the body personal data: show only their sizes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundRequest")
            .field("method", self.method)
            .field("headers", &self.headers.len())
            .field("body_bytes", &self.body.len())
            .finish_non_exhaustive()
    }
}
