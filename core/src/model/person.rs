//! A person: the one identity every identifier of a contact (e-mail, phone, each source's
//! own key) resolves to, so links, leases and field versions belong to (person, vendor)
//! whichever source a change came from. Resolution and storage live in
//! `relay_shared::store::identity`; the core only carries the id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A person id: `p` followed by 32 lowercase hex digits of a UUIDv7, so ids sort by the
/// time the person was first seen (older first). It holds no personal data and is safe in
/// URLs, logs and table keys (Channel.io's memberId derives from it).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PersonId(String);

/// A string that is not a person id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a person id (expected `p` and 32 lowercase hex digits)")]
pub struct InvalidPersonId;

impl PersonId {
    /// The id from its 16 UUID bytes (the caller makes a UUIDv7).
    pub fn from_uuid_bytes(bytes: [u8; 16]) -> Self {
        PersonId(format!("p{}", hex::encode(bytes)))
    }

    pub fn parse(text: &str) -> Result<Self, InvalidPersonId> {
        let ok = text.len() == 33
            && text.starts_with('p')
            && text[1..]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if ok {
            Ok(PersonId(text.to_string()))
        } else {
            Err(InvalidPersonId)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonId({})", self.0)
    }
}

impl fmt::Display for PersonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for PersonId {
    type Error = InvalidPersonId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PersonId::parse(&s)
    }
}

impl From<PersonId> for String {
    fn from(p: PersonId) -> String {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_their_bytes() {
        let older = PersonId::from_uuid_bytes([0x01; 16]);
        let newer = PersonId::from_uuid_bytes([0x02; 16]);
        assert!(older < newer);
        assert_eq!(PersonId::parse(older.as_str()), Ok(older.clone()));
        assert_eq!(older.as_str().len(), 33);
        assert!(PersonId::parse("p123").is_err());
        assert!(PersonId::parse(&format!("q{}", "0".repeat(32))).is_err());
        assert!(PersonId::parse(&format!("p{}", "A".repeat(32))).is_err());
        let json = serde_json::to_string(&older).unwrap();
        assert_eq!(serde_json::from_str::<PersonId>(&json).unwrap(), older);
        assert!(serde_json::from_str::<PersonId>("\"ann@example.com\"").is_err());
    }
}
