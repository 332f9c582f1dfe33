//! HTTP Basic credentials (Pipedrive webhooks): `Authorization: Basic base64(user:pass)`.
//! Both parts are compared in constant time over their SHA-256 digests, so neither the
//! match position nor the configured lengths leak through timing.

use http::HeaderName;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::encoding::{base64_decode, base64_encode};
use super::{InboundRequest, SignatureError, Verified};

/// The header carrying the credentials.
pub const HEADER: HeaderName = AUTHORIZATION;

/// One accepted user/password pair, configured as the secret `user:password`.
#[derive(Clone)]
pub struct Credentials {
    user: SecretString,
    password: SecretString,
}

impl Credentials {
    /// Splits `user:password` at the first `:` (RFC 7617: user ids contain no colon).
    pub fn parse(secret: &str) -> Result<Self, &'static str> {
        let (user, password) = secret.split_once(':').ok_or("expected `user:password`")?;
        if user.is_empty() || password.is_empty() {
            return Err("user and password must both be non-empty");
        }
        Ok(Self {
            user: user.into(),
            password: password.into(),
        })
    }

    fn matches(&self, user: &[u8], password: &[u8]) -> bool {
        let digest = |b: &[u8]| Sha256::digest(b);
        let user_ok = digest(self.user.expose_secret().as_bytes()).ct_eq(&digest(user));
        let password_ok = digest(self.password.expose_secret().as_bytes()).ct_eq(&digest(password));
        bool::from(user_ok & password_ok)
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(<redacted>)")
    }
}

/// The `Authorization` value for `credentials`.
#[must_use]
pub fn sign(credentials: &Credentials) -> String {
    let pair = format!(
        "{}:{}",
        credentials.user.expose_secret(),
        credentials.password.expose_secret()
    );
    format!("Basic {}", base64_encode(pair.as_bytes()))
}

pub(crate) fn verify(
    accepted: &[Credentials],
    req: &InboundRequest<'_>,
) -> Result<Verified, SignatureError> {
    let value = req.header(&HEADER)?;
    let (scheme, encoded) = value
        .split_once(' ')
        .ok_or_else(|| SignatureError::malformed(&HEADER, "expected `Basic <credentials>`"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(SignatureError::malformed(&HEADER, "not the Basic scheme"));
    }
    let decoded = base64_decode(encoded.trim())
        .ok_or_else(|| SignatureError::malformed(&HEADER, "credentials not base64"))?;
    let colon = decoded
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| SignatureError::malformed(&HEADER, "credentials lack `:`"))?;
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let mut found = None;
    for (index, credentials) in accepted.iter().enumerate() {
        if credentials.matches(user, password) && found.is_none() {
            found = Some(index);
        }
    }
    let key_index = found.ok_or(SignatureError::Mismatch)?;
    Ok(Verified {
        delivery_id: None,
        signed_at: None,
        key_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_rfc7617_style() {
        let credentials = Credentials::parse("user:pass").unwrap();
        assert_eq!(sign(&credentials), "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn password_may_contain_colons() {
        let credentials = Credentials::parse("u:p:q").unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(HEADER, sign(&credentials).parse().unwrap());
        let req = InboundRequest::new(&http::Method::POST, "https://h/", &headers, b"");
        assert_eq!(verify(&[credentials], &req).unwrap().key_index, 0);
    }

    #[test]
    fn wrong_user_or_wrong_password_fails() {
        let accepted = [Credentials::parse("user:pass").unwrap()];
        for (user, pass) in [
            ("user", "pasS"),
            ("usEr", "pass"),
            ("user", ""),
            ("", "pass"),
        ] {
            let mut headers = http::HeaderMap::new();
            let value = format!(
                "Basic {}",
                base64_encode(format!("{user}:{pass}").as_bytes())
            );
            headers.insert(HEADER, value.parse().unwrap());
            let req = InboundRequest::new(&http::Method::POST, "https://h/", &headers, b"");
            assert_eq!(
                verify(&accepted, &req),
                Err(SignatureError::Mismatch),
                "{user}:{pass}"
            );
        }
    }

    #[test]
    fn rejects_bad_secrets_and_redacts() {
        assert!(Credentials::parse("nocolon").is_err());
        assert!(Credentials::parse(":pass").is_err());
        assert!(Credentials::parse("user:").is_err());
        assert_eq!(
            format!("{:?}", Credentials::parse("user:pass").unwrap()),
            "Credentials(<redacted>)"
        );
    }
}
