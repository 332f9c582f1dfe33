//! The partition keys of the one table, and the hashes that keep personal data out of it.
//!
//! Every key is `<kind>#<namespace>#<id>`: `kind` and `namespace` come from a closed set of
//! our own names (no `#`), and the id is everything after the second `#`, so any id — even
//! one containing `#` — maps to exactly one key.

use std::fmt;

use sha2::{Digest, Sha256};

use super::StoreError;
use crate::model::Vendor;

/// Longest sender event id kept as it is in a claim key (DynamoDB's partition key limit is
/// 2048 bytes); longer ones are hashed. Real ids (UUIDs, `msg_…`, numbers) are far shorter.
pub const MAX_VERBATIM_ID_BYTES: usize = 256;

/// Key of an inbound event claim (the state machine of [`super::IdempotencyStore`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    pk: String,
}

impl IdempotencyKey {
    /// `evt#<source>#<sender event id>`: one event from one sender, e.g. a Typeform
    /// `event_id`. `source` is our own name for the sender (`[A-Za-z0-9_-]`, as the mapping
    /// file allows). The sender controls the id, so any id is accepted: one longer than
    /// [`MAX_VERBATIM_ID_BYTES`] (or empty) is kept as `sha256:<hex>` of itself — equality
    /// is all a claim needs — instead of failing the store's key size limit.
    pub fn inbound(source: &str, sender_event_id: &str) -> Result<Self, StoreError> {
        check_name(source, "source must be 1-64 of [A-Za-z0-9_-]")?;
        let pk = if sender_event_id.is_empty() || sender_event_id.len() > MAX_VERBATIM_ID_BYTES {
            format!(
                "evt#{source}#sha256:{}",
                hex::encode(Sha256::digest(sender_event_id.as_bytes()))
            )
        } else {
            format!("evt#{source}#{sender_event_id}")
        };
        Ok(Self { pk })
    }

    /// The partition key string.
    pub fn as_str(&self) -> &str {
        &self.pk
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdempotencyKey({})", self.pk)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pk)
    }
}

/// SHA-256 of a request payload. Stored with a claim so a duplicate key carrying a
/// different payload is detected instead of being silently treated as a repeat.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadHash([u8; 32]);

impl PayloadHash {
    /// Hashes the payload bytes (the raw body as received).
    pub fn of(payload: &[u8]) -> Self {
        Self(Sha256::digest(payload).into())
    }

    /// Lowercase hex, the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the stored form.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for PayloadHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayloadHash({})", self.to_hex())
    }
}

/// SHA-256 (hex) of a contact key such as a normalised e-mail address or E.164 phone
/// number. Only the hash is kept, so the table holds no e-mail or phone at rest.
///
/// A plain hash of a low-entropy value can be reversed by guessing; whoever can read the
/// table can confirm a guessed address. A keyed hash (HMAC with a secret) would close that;
/// the plain hash was chosen so keys stay stable without a secret to rotate.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ContactKeyHash(String);

impl ContactKeyHash {
    /// Hashes a contact key. The input is personal data and is not retained.
    pub fn of(contact_key: &str) -> Self {
        Self(hex::encode(Sha256::digest(contact_key.as_bytes())))
    }

    /// The 64-character lowercase hex digest.
    pub fn as_hex(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ContactKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContactKeyHash({})", self.0)
    }
}

/// Key of a link between one of our contacts and a vendor's record:
/// `lnk#<vendor>#<sha256 hex of contact key>`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LinkKey {
    pk: String,
}

impl LinkKey {
    /// The link of `contact` at `vendor`.
    pub fn new(vendor: Vendor, contact: &ContactKeyHash) -> Self {
        Self {
            pk: format!("lnk#{vendor}#{}", contact.as_hex()),
        }
    }

    /// The link of `person` at `vendor`: `lnk#<vendor>#<person id>` (a person id holds no
    /// personal data). Every source's changes for one person share it.
    pub fn for_person(vendor: Vendor, person: &crate::model::PersonId) -> Self {
        Self {
            pk: format!("lnk#{vendor}#{person}"),
        }
    }

    /// The partition key string.
    pub fn as_str(&self) -> &str {
        &self.pk
    }
}

/// Key of a rate limiter: one per vendor account, shared by every running instance:
/// `lim#<vendor>#<account>`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LimiterKey {
    pk: String,
}

impl LimiterKey {
    /// The limiter of `account` (our name for the vendor account, `[a-z0-9_-]`) at `vendor`.
    pub fn new(vendor: Vendor, account: &str) -> Result<Self, StoreError> {
        check_name(account, "account must be 1-64 of [A-Za-z0-9_-]")?;
        Ok(Self {
            pk: format!("lim#{vendor}#{account}"),
        })
    }

    /// The limiter of `account` at a source the relay reads from (`lim#src-<source>#<account>`;
    /// `source` is a reader's name such as `hubspot_crm`).
    pub fn for_source(source: &str, account: &str) -> Result<Self, StoreError> {
        check_name(source, "source must be 1-64 of [A-Za-z0-9_-]")?;
        check_name(account, "account must be 1-64 of [A-Za-z0-9_-]")?;
        Ok(Self {
            pk: format!("lim#src-{source}#{account}"),
        })
    }

    /// The partition key string.
    pub fn as_str(&self) -> &str {
        &self.pk
    }
}

fn check_name(name: &str, why: &'static str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(why))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_sender_event_id_makes_a_key_of_bounded_size() {
        let long = "x".repeat(5_000);
        let key = IdempotencyKey::inbound("standard", &long).unwrap();
        assert!(key.as_str().starts_with("evt#standard#sha256:"));
        assert_eq!(key.as_str().len(), "evt#standard#sha256:".len() + 64);
        assert_ne!(
            key,
            IdempotencyKey::inbound("standard", &"x".repeat(5_001)).unwrap()
        );
        let exact = "y".repeat(MAX_VERBATIM_ID_BYTES);
        assert_eq!(
            IdempotencyKey::inbound("standard", &exact)
                .unwrap()
                .as_str(),
            format!("evt#standard#{exact}")
        );
        assert!(IdempotencyKey::inbound("standard", "").is_ok());
        assert!(IdempotencyKey::inbound("Type-Form_2", "e").is_ok());
        assert!(IdempotencyKey::inbound("type#form", "e").is_err());
    }

    #[test]
    fn keys_have_the_documented_shape() {
        assert_eq!(
            IdempotencyKey::inbound("typeform", "ev#1")
                .unwrap()
                .as_str(),
            "evt#typeform#ev#1"
        );
        assert_eq!(
            LimiterKey::new(Vendor::Channelio, "main").unwrap().as_str(),
            "lim#channelio#main"
        );
        let contact = ContactKeyHash::of("email:alice@example.com");
        let link = LinkKey::new(Vendor::Hood, &contact);
        assert_eq!(link.as_str(), format!("lnk#hood#{}", contact.as_hex()));
        assert_eq!(contact.as_hex().len(), 64);
        assert!(!link.as_str().contains("alice"));
    }

    #[test]
    fn sha256_of_known_input() {
        // sha256("abc"), FIPS 180-2 test vector.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(ContactKeyHash::of("abc").as_hex(), expected);
        assert_eq!(PayloadHash::of(b"abc").to_hex(), expected);
        assert_eq!(
            PayloadHash::from_hex(expected),
            Some(PayloadHash::of(b"abc"))
        );
        assert_eq!(PayloadHash::from_hex("zz"), None);
    }

    #[test]
    fn invalid_key_parts_are_rejected() {
        assert!(matches!(
            IdempotencyKey::inbound("", "1"),
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            IdempotencyKey::inbound("Type#form", "1"),
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            LimiterKey::new(Vendor::Hood, "a b"),
            Err(StoreError::InvalidKey(_))
        ));
    }
}
