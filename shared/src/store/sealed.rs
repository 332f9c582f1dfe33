//! Encryption at rest for the raw events kept for replay: AES-256-GCM (the `aes-gcm`
//! crate, RustCrypto) under one deployment key, a fresh random 96-bit nonce per item, and
//! the item's id and source as associated data, so a sealed body moved to another item
//! does not open.
//!
//! The key is 32 random bytes, given base64-encoded: in Lambda from the SecureString SSM
//! parameter named by `RELAY_RAW_KEY_PARAMETER`, locally (and for the CLI) from
//! `RELAY_RAW_KEY`. Make one with `openssl rand -base64 32`. It never reaches a log or
//! `Debug`.

use std::fmt;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// Nonce length of AES-GCM (96 bits), stored in front of the ciphertext.
const NONCE_BYTES: usize = 12;

/// Why a key or a sealed body could not be used. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the raw-event key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)")]
    BadKey,
    #[error("the sealed body does not open with this key (wrong key, or altered)")]
    Open,
    #[error("could not seal the body")]
    Seal,
}

/// The deployment key for raw events.
#[derive(Clone)]
pub struct RawKey(Aes256Gcm);

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RawKey(<redacted>)")
    }
}

impl RawKey {
    /// The key from its base64 form (standard alphabet, padding optional).
    pub fn from_base64(text: &SecretString) -> Result<Self, SealError> {
        let trimmed = text.expose_secret().trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| SealError::BadKey)?;
        Self::from_bytes(&bytes)
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        Aes256Gcm::new_from_slice(bytes)
            .map(RawKey)
            .map_err(|_| SealError::BadKey)
    }

    /// `nonce ‖ ciphertext ‖ tag` of `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        self.seal_with(&nonce, aad, plaintext)
    }

    fn seal_with(
        &self,
        nonce: &Nonce<aes_gcm::aead::consts::U12>,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let sealed = self
            .0
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens what [`Self::seal`] made with the same key and `aad`.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < NONCE_BYTES + 16 {
            return Err(SealError::Open);
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        self.0
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// A NIST CAVS vector (gcmEncryptExtIV256.rsp; also in the aes-gcm crate's own tests):
    /// our framing adds only the nonce in front.
    #[test]
    fn nist_vector() {
        let key = RawKey::from_bytes(&hex(
            "92e11dcdaa866f5ce790fd24501f92509aacf4cb8b1339d50c9c1240935dd08b",
        ))
        .unwrap();
        let nonce = hex("ac93a1a6145299bde902f21a");
        let aad = hex("1e0889016f67601c8ebea4943bc23ad6");
        let sealed = key
            .seal_with(
                Nonce::from_slice(&nonce),
                &aad,
                &hex("2d71bcfa914e4ac045b2aa60955fad24"),
            )
            .unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "ac93a1a6145299bde902f21a8995ae2e6df3dbf96fac7b7137bae67feca5aa77d51d4a0a14d9c51e1da474ab"
        );
        assert_eq!(
            key.open(&aad, &sealed).unwrap(),
            hex("2d71bcfa914e4ac045b2aa60955fad24")
        );
    }

    #[test]
    fn wrong_aad_key_or_a_flipped_bit_do_not_open() {
        let key = RawKey::from_bytes(&[7; 32]).unwrap();
        let sealed = key
            .seal(b"raw#1", b"{\"email\":\"ann@example.com\"}")
            .unwrap();
        assert!(!sealed.windows(3).any(|w| w == b"ann"));
        assert_eq!(
            key.open(b"raw#1", &sealed).unwrap(),
            b"{\"email\":\"ann@example.com\"}"
        );
        assert!(matches!(key.open(b"raw#2", &sealed), Err(SealError::Open)));
        let other = RawKey::from_bytes(&[8; 32]).unwrap();
        assert!(matches!(
            other.open(b"raw#1", &sealed),
            Err(SealError::Open)
        ));
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(matches!(key.open(b"raw#1", &flipped), Err(SealError::Open)));
        assert!(matches!(
            key.open(b"raw#1", &sealed[..20]),
            Err(SealError::Open)
        ));
        // Two seals of one body differ (fresh nonces).
        assert_ne!(
            sealed,
            key.seal(b"raw#1", b"{\"email\":\"ann@example.com\"}")
                .unwrap()
        );
    }

    #[test]
    fn keys_are_32_bytes_of_base64_and_never_printed() {
        let text = SecretString::from(base64::engine::general_purpose::STANDARD.encode([1u8; 32]));
        let key = RawKey::from_base64(&text).unwrap();
        assert_eq!(format!("{key:?}"), "RawKey(<redacted>)");
        for bad in ["", "not base64!", "AAAA"] {
            let err = RawKey::from_base64(&SecretString::from(bad)).unwrap_err();
            assert!(matches!(err, SealError::BadKey), "{bad}");
        }
    }
}
