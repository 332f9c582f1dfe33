//! Item (de)serialisation: the only place that knows attribute names and types.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::DateTime;
use uuid::Uuid;

use crate::store::clock::from_epoch_ms;
use crate::store::{
    AppliedField, ClaimRecord, ClaimState, DeliveryId, Link, PayloadHash, StoreError,
};

/// A DynamoDB item.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) const PK: &str = "pk";
pub(super) const STATE: &str = "state";
pub(super) const PAYLOAD_HASH: &str = "payload_hash";
pub(super) const LEASE_UNTIL: &str = "lease_until";
pub(super) const CLAIM_TOKEN: &str = "claim_token";
pub(super) const RESULT: &str = "result";
pub(super) const EXPIRES_AT: &str = "expires_at";
pub(super) const VENDOR_ID: &str = "vendor_id";
pub(super) const FIELDS: &str = "fields";
pub(super) const RECENT: &str = "recent";
pub(super) const LEASE_TOKEN: &str = "lease_token";
pub(super) const TAT: &str = "tat";

pub(super) const IN_PROGRESS: &str = "in_progress";
pub(super) const COMPLETED: &str = "completed";
pub(super) const RELEASED: &str = "released";

/// A string attribute.
pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

/// A number attribute.
pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// The key of the item with partition key `pk`.
pub(super) fn key(pk: &str) -> Item {
    HashMap::from([(PK.to_owned(), s(pk))])
}

/// A claim or delivery record.
pub(super) fn claim_item(pk: &str, record: &ClaimRecord) -> Item {
    let mut item = key(pk);
    item.insert(PAYLOAD_HASH.into(), s(record.payload_hash.to_hex()));
    item.insert(EXPIRES_AT.into(), n(record.expires_at.timestamp()));
    let state = match &record.state {
        ClaimState::InProgress { lease_until, token } => {
            item.insert(LEASE_UNTIL.into(), n(lease_until.timestamp_millis()));
            item.insert(CLAIM_TOKEN.into(), s(token.to_string()));
            IN_PROGRESS
        }
        ClaimState::Completed { result } => {
            item.insert(RESULT.into(), s(result.as_str()));
            COMPLETED
        }
        ClaimState::Released => RELEASED,
    };
    item.insert(STATE.into(), s(state));
    item
}

/// Reads a claim or delivery record.
pub(super) fn claim_record(item: &Item) -> Result<ClaimRecord, StoreError> {
    let r = Reader(item);
    let payload_hash = PayloadHash::from_hex(r.s(PAYLOAD_HASH)?)
        .ok_or_else(|| r.malformed("payload_hash is not hex"))?;
    let expires_at = DateTime::from_timestamp(r.n(EXPIRES_AT)?, 0)
        .ok_or_else(|| r.malformed("expires_at out of range"))?;
    let state = match r.s(STATE)? {
        IN_PROGRESS => ClaimState::InProgress {
            lease_until: from_epoch_ms(r.n(LEASE_UNTIL)?),
            token: Uuid::parse_str(r.s(CLAIM_TOKEN)?)
                .map_err(|_| r.malformed("claim_token is not a uuid"))?,
        },
        COMPLETED => ClaimState::Completed {
            result: r.s(RESULT)?.to_owned(),
        },
        RELEASED => ClaimState::Released,
        _ => return Err(r.malformed("unknown state")),
    };
    Ok(ClaimRecord {
        payload_hash,
        state,
        expires_at,
    })
}

/// The `fields` attribute: per vendor field, `<fingerprint>@<version>`.
pub(super) fn fields(link: &Link) -> AttributeValue {
    AttributeValue::M(
        link.fields
            .iter()
            .map(|(k, f)| (k.clone(), s(format!("{}@{}", f.fingerprint, f.version))))
            .collect(),
    )
}

/// The `recent` attribute: delivery ids, oldest first.
pub(super) fn recent(link: &Link) -> AttributeValue {
    AttributeValue::L(link.recent.iter().map(|d| s(d.as_str())).collect())
}

/// Reads a link item (a new item holding only a lease reads as an empty link).
pub(super) fn link(item: &Item) -> Result<Link, StoreError> {
    let r = Reader(item);
    let vendor_id = match item.get(VENDOR_ID) {
        None => None,
        Some(_) => Some(r.s(VENDOR_ID)?.to_owned()),
    };
    let fields = match item.get(FIELDS) {
        None => Default::default(),
        Some(AttributeValue::M(map)) => map
            .iter()
            .map(|(k, v)| {
                let applied = v
                    .as_s()
                    .ok()
                    .and_then(|v| v.rsplit_once('@'))
                    .and_then(|(fp, version)| {
                        Some(AppliedField {
                            fingerprint: fp.to_owned(),
                            version: version.parse().ok()?,
                        })
                    })
                    .ok_or_else(|| {
                        r.malformed("fields holds a value that is not <fingerprint>@<version>")
                    })?;
                Ok((k.clone(), applied))
            })
            .collect::<Result<_, StoreError>>()?,
        Some(_) => return Err(r.malformed("fields is not a map")),
    };
    let recent = match item.get(RECENT) {
        None => Vec::new(),
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|v| v.as_s().map(|s| DeliveryId::from_stored(s.clone())))
            .collect::<Result<_, _>>()
            .map_err(|_| r.malformed("recent holds a non-string"))?,
        Some(_) => return Err(r.malformed("recent is not a list")),
    };
    Ok(Link {
        vendor_id,
        fields,
        recent,
    })
}

/// The `lease_until` of a link item, if a lease is recorded.
pub(super) fn lease_until(item: &Item) -> Result<Option<i64>, StoreError> {
    match item.get(LEASE_UNTIL) {
        None => Ok(None),
        Some(_) => Reader(item).n(LEASE_UNTIL).map(Some),
    }
}

/// The limiter's `tat`, if the item has one.
pub(super) fn tat(item: &Item) -> Result<Option<i64>, StoreError> {
    let r = Reader(item);
    match item.get(TAT) {
        None => Ok(None),
        Some(_) => r.n(TAT).map(Some),
    }
}

struct Reader<'a>(&'a Item);

impl Reader<'_> {
    fn s(&self, name: &'static str) -> Result<&str, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::S(v)) => Ok(v),
            Some(_) => Err(self.malformed(&format!("{name} is not a string"))),
            None => Err(self.malformed(&format!("{name} is missing"))),
        }
    }

    fn n(&self, name: &'static str) -> Result<i64, StoreError> {
        match self.0.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| self.malformed(&format!("{name} is not an integer"))),
            Some(_) => Err(self.malformed(&format!("{name} is not a number"))),
            None => Err(self.malformed(&format!("{name} is missing"))),
        }
    }

    fn malformed(&self, reason: &str) -> StoreError {
        let pk = self
            .0
            .get(PK)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        StoreError::Malformed {
            pk,
            reason: reason.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_records_round_trip() {
        let hash = PayloadHash::of(b"x");
        let expires_at = from_epoch_ms(1_900_000_000_000);
        for state in [
            ClaimState::InProgress {
                lease_until: from_epoch_ms(1_800_000_000_123),
                token: Uuid::new_v4(),
            },
            ClaimState::Completed {
                result: "{\"id\":\"p1\"}".into(),
            },
            ClaimState::Released,
        ] {
            let record = ClaimRecord {
                payload_hash: hash,
                state,
                expires_at,
            };
            let item = claim_item("evt#tally#1", &record);
            assert_eq!(claim_record(&item).unwrap(), record);
        }
    }

    #[test]
    fn expires_at_is_epoch_seconds() {
        let record = ClaimRecord {
            payload_hash: PayloadHash::of(b""),
            state: ClaimState::Released,
            expires_at: from_epoch_ms(1_900_000_000_000),
        };
        assert_eq!(claim_item("evt#a#b", &record)[EXPIRES_AT], n(1_900_000_000));
    }

    #[test]
    fn links_round_trip_and_bad_items_are_named() {
        let mut link = Link {
            vendor_id: Some("42".into()),
            fields: [(
                "email".to_string(),
                AppliedField {
                    fingerprint: "0f1e2d3c4b5a6978".into(),
                    version: 1_800_000_000_000,
                },
            )]
            .into(),
            recent: Vec::new(),
        };
        link.remember(DeliveryId::of("typeform#1"));
        let mut stored = key("lnk#hood#ab");
        stored.insert(VENDOR_ID.into(), s("42"));
        stored.insert(FIELDS.into(), fields(&link));
        stored.insert(RECENT.into(), recent(&link));
        assert_eq!(self::link(&stored).unwrap(), link);
        assert_eq!(self::link(&key("lnk#hood#ab")).unwrap(), Link::default());

        let mut bad = key("lnk#hood#cd");
        bad.insert(
            FIELDS.into(),
            AttributeValue::M([("email".to_string(), s("no-version"))].into()),
        );
        let err = self::link(&bad).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed item `lnk#hood#cd`: fields holds a value that is not <fingerprint>@<version>"
        );
    }
}
