//! Completing a change from its source before it is synced ("enrichment").
//!
//! HubSpot sends one event per changed property: a property change of a contact the relay
//! has never seen carries no e-mail or phone, so no vendor can create the person's record
//! from it, and its person is new (its only identifier is HubSpot's object id). With a
//! reader configured for the source (a HubSpot private-app token), the worker reads the
//! contact from the source's API — held to the account's limit, shared by every instance —
//! maps the answer with the source's own mapping, fills in what the change lacks, and
//! resolves the person again: the e-mail now found may be a person's the relay knows (the
//! two are merged, see `store::identity`). Without a reader such a change waits for an event
//! that brings an identifier (`identity_incomplete`), then dead-letters with that reason.
//!
//! The worker asks for this only when the vendor has no record of the person yet and the
//! change has neither e-mail nor phone (see [`Enrichment::wants`]): a person already synced
//! costs no read, and the deliveries of one change to its vendors share one read
//! ([`RecentReads`]).

pub mod hubspot;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;

use crate::mapping::source::{EventDefaults, EventOutcome, SourceMapping};
use crate::model::{Contact, ContactChange};
use crate::store::RateLimiter;
use crate::store::identity::Identity;

/// Reads a contact from the source it came from.
#[async_trait::async_trait]
pub trait SourceReader: Send + Sync {
    /// A name for logs (`hubspot_crm`).
    fn name(&self) -> &'static str;

    /// The longest a read may take (its client's timeout): a read is not started when the
    /// invocation would end before it.
    fn timeout(&self) -> Duration;

    /// The contact with the source's id `id` (the id part of its contact key), as a payload
    /// of that source's webhook format; `None` when the source no longer has it.
    async fn read(&self, id: &str) -> Result<Option<Value>, ReadError>;
}

/// Why a read failed. Messages never quote personal data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A timeout, a 5xx or an unreadable answer: retried with back-off.
    #[error("{0}")]
    Transient(String),
    /// 429: wait (the limiter's schedule is pushed back for every instance).
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// 401/403: the token is wrong or lacks the scope.
    #[error("HTTP {0}: the token was refused (check it and its crm.objects.contacts.read scope)")]
    Auth(u16),
    /// Any other answer.
    #[error("{0}")]
    Permanent(String),
}

/// One source's reader and the limiter its reads are held to.
#[derive(Clone)]
pub struct SourceRead {
    pub reader: Arc<dyn SourceReader>,
    pub limiter: Arc<dyn RateLimiter>,
}

/// What the worker completes changes with: a reader per source, and the identity store to
/// resolve the completed change's person in.
#[derive(Clone)]
pub struct Enrichment {
    pub readers: BTreeMap<String, SourceRead>,
    pub identity: Identity,
    /// This process's recent reads, so the deliveries of one change to several vendors
    /// (usually in one batch) read the source once.
    pub reads: Arc<RecentReads>,
}

/// How long a read answers the same contact's other deliveries in this process.
pub const READ_REUSE: Duration = Duration::from_secs(60);

/// Reads of the last [`READ_REUSE`], per `<source>#<id>`, and one turn per contact: a
/// delivery that finds another reading the same contact waits for its answer instead of
/// reading too. In memory only, dropped after [`READ_REUSE`].
#[derive(Default)]
pub struct RecentReads {
    answers: Mutex<HashMap<String, (Instant, Option<Value>)>>,
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for RecentReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Answers hold personal data: only how many.
        let held = self.answers.lock().map(|a| a.len()).unwrap_or(0);
        f.debug_struct("RecentReads").field("held", &held).finish()
    }
}

impl RecentReads {
    /// Waits until no other delivery of this process is reading `key`; held while reading.
    pub async fn turn(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = match self.turns.lock() {
            Ok(mut turns) => {
                // Turns no one holds or waits for are dropped.
                turns.retain(|_, t| Arc::strong_count(t) > 1);
                turns.entry(key.to_owned()).or_default().clone()
            }
            Err(_) => Arc::default(),
        };
        turn.lock_owned().await
    }

    /// The answer read for `key` within [`READ_REUSE`], if any (`Some(None)`: the source
    /// said the contact is gone).
    pub fn get(&self, key: &str) -> Option<Option<Value>> {
        let answers = self.answers.lock().ok()?;
        let (at, answer) = answers.get(key)?;
        (at.elapsed() < READ_REUSE).then(|| answer.clone())
    }

    /// Keeps `answer` for `key`, and forgets the answers past [`READ_REUSE`].
    pub fn put(&self, key: &str, answer: Option<Value>) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.retain(|_, (at, _)| at.elapsed() < READ_REUSE);
            answers.insert(key.to_owned(), (Instant::now(), answer));
        }
    }
}

impl Enrichment {
    /// Whether `change` is one to complete: its source has a reader, and it carries neither
    /// e-mail nor phone (the caller checks that the vendor has no record of the person).
    pub fn wants(&self, change: &ContactChange) -> Option<&SourceRead> {
        let contact = &change.contact;
        if contact.email.is_some() || contact.phone.is_some() {
            return None;
        }
        self.readers.get(&change.event.source)
    }
}

/// `payload` (a read of `change`'s contact) mapped with the source's mapping: the contact it
/// describes, or `None` when it maps to none (dropped fields cost only themselves).
pub fn read_contact(
    source: &SourceMapping,
    change: &ContactChange,
    payload: &Value,
) -> Option<Contact> {
    let defaults = EventDefaults {
        event_id: format!("{}-read", change.event.event_id),
        received_at: Utc::now(),
    };
    let events = source.map(payload, &defaults).ok()?;
    events.into_iter().find_map(|event| match event.outcome {
        EventOutcome::Change(mapped) if mapped.change.contact.key == change.contact.key => {
            Some(mapped.change.contact)
        }
        _ => None,
    })
}

/// `contact` with what `read` knows and it lacks. The change's own values stay (they are what
/// the event said); a full name the change could not make (a first name alone) is made from
/// its parts once the read supplied the missing one, else it is the read's.
pub fn complete(source: &SourceMapping, contact: &mut Contact, read: Contact) {
    let Contact {
        email,
        phone,
        full_name,
        organization,
        tags,
        lists,
        custom,
        ..
    } = read;
    contact.email = contact.email.take().or(email);
    contact.phone = contact.phone.take().or(phone);
    contact.organization = contact.organization.take().or(organization);
    contact.tags = contact.tags.take().or(tags);
    contact.lists = contact.lists.take().or(lists);
    for (name, value) in custom {
        contact.custom.entry(name).or_insert(value);
    }
    source.compose_full_name(contact);
    contact.full_name = contact.full_name.take().or(full_name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContactKey, Email};
    use serde_json::json;

    #[test]
    fn the_change_keeps_its_own_values_and_gains_the_rest() {
        let mappings = crate::mapping::Mappings::builtin().unwrap();
        let source = mappings.source("hubspot").unwrap();
        // A first-name edit: the mapping makes no full name of a first name alone.
        let mut change = Contact::new(ContactKey::external("hubspot", "901").unwrap());
        change.custom.insert("first_name".into(), json!("Dana"));
        let mut read = Contact::new(ContactKey::external("hubspot", "901").unwrap());
        read.email = Some(Email::parse("Dana.OBrien+work@Example.com").unwrap());
        read.full_name = Some("Danielle O'Brien".into());
        read.custom.insert("first_name".into(), json!("Danielle"));
        read.custom
            .insert("last_name".into(), json!("O'Brien-Łukasik"));
        complete(source, &mut change, read);
        assert_eq!(
            change.email.as_ref().map(Email::as_str),
            Some("dana.obrien+work@example.com")
        );
        assert_eq!(
            change.custom["first_name"],
            json!("Dana"),
            "the event's own value"
        );
        assert_eq!(change.custom["last_name"], json!("O'Brien-Łukasik"));
        assert_eq!(change.full_name.as_deref(), Some("Dana O'Brien-Łukasik"));
    }

    #[test]
    fn a_read_is_mapped_by_the_source_mapping_with_bad_fields_dropped() {
        let mappings = crate::mapping::Mappings::builtin().unwrap();
        let source = mappings.source("hubspot").unwrap();
        let change = ContactChange {
            event: crate::model::SyncEvent {
                source: "hubspot".into(),
                event_id: "3817289301".into(),
                occurred_at: Utc::now(),
                kind: crate::model::ChangeKind::Updated,
            },
            contact: Contact::new(ContactKey::external("hubspot", "901").unwrap()),
            versions: Default::default(),
        };
        let ev = |name: &str, value: &str| {
            json!({"eventId": format!("crm-901-{name}"), "subscriptionType": "contact.propertyChange",
                   "objectId": 901, "propertyName": name, "propertyValue": value,
                   "occurredAt": 1_763_651_100_000_i64})
        };
        let payload = json!([
            ev("email", "Dana.OBrien+work@Example.com"),
            ev("phone", "not a phone"),
            ev("firstname", "Dana"),
            ev("lastname", "O'Brien"),
            ev("company", "Łukasik & Söhne"),
        ]);
        let read = read_contact(source, &change, &payload).unwrap();
        assert_eq!(
            read.email.as_ref().map(Email::as_str),
            Some("dana.obrien+work@example.com")
        );
        assert_eq!(
            read.phone, None,
            "a phone that does not parse costs that field"
        );
        assert_eq!(read.full_name.as_deref(), Some("Dana O'Brien"));
        assert_eq!(read.organization.as_deref(), Some("Łukasik & Söhne"));
        // Another contact's answer is not this one's.
        let other = json!([
            json!({"eventId": "x", "subscriptionType": "contact.propertyChange",
            "objectId": 902, "propertyName": "email", "propertyValue": "x@example.com",
            "occurredAt": 1_763_651_100_000_i64})
        ]);
        assert!(read_contact(source, &change, &other).is_none());
    }
}
