//! Identity resolution: every identifier a change carries — the normalised e-mail, the
//! E.164 phone, the source's own key (`hubspot:901`, `pipedrive:42`, `standard:ct_1`) —
//! resolves to one [`PersonId`], so the same person arriving from a form, a CRM and our
//! own apps is one record at every vendor. Links, leases and per-field versions are kept
//! per (person, vendor) (`LinkKey::for_person`).
//!
//! # Items
//!
//! * `idn#<identifier hash>` → `person`: which person an identifier belongs to.
//! * `per#<person id>` → `ids` (the hashes pointing at it), `version` (bumped by every
//!   change to `ids`) and, once merged, `merged_into`.
//!
//! The identifier hash is HMAC-SHA256 under the deployment's identity key
//! ([`IdentityKey`]), never a plain hash: reading the table does not confirm a guessed
//! e-mail address or phone number.
//!
//! # Resolution ([`resolve`])
//!
//! 1. Read where the identifiers point ([`IdentityStore::find`], one consistent read).
//! 2. None known: a new person (UUIDv7, so ids sort by age) and all its identifiers in one
//!    all-or-nothing conditional write ([`IdentityStore::attach`]); a concurrent first
//!    event for the same person makes ours fail, and the retry reads theirs.
//! 3. Two or more persons known: **the oldest survives** (smallest id). Each other person
//!    is merged into it ([`IdentityStore::merge`]): in one all-or-nothing write, every
//!    identifier the loser lists points to the survivor, the survivor lists them, and the
//!    loser is marked `merged_into`. The write is fenced by the loser's `version`, and an
//!    attach to a merged person fails, so after a merge no identifier points to the loser.
//!    Concurrent resolutions choose the same survivor (the rule depends only on the ids),
//!    so they converge instead of creating a third person.
//! 4. Identifiers not yet known are attached to the person (one more conditional write).
//!
//! Any conditional failure means another resolution got there first: read again and
//! repeat (at most [`MAX_ROUNDS`] times). Calls: known person, nothing new — 1; new
//! person — 2; a new identifier for a known person — 2; a merge — 2 more per loser.
//!
//! Ingest first tries the claim and the person in one write
//! ([`IdentityStore::claim_with_person`], guessing a new person or, from [`PersonCache`],
//! a known one); a refusal's answer replaces step 1 ([`resolve_hashed`] with `known`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use chrono::{DateTime, Utc};

use super::journal::EventEntry;
use super::{Claim, ClaimOutcome, IdempotencyKey, PayloadHash, StoreError};
use crate::model::{Contact, ContactKey, PersonId};

/// How many times [`resolve`] reads again after losing a race before it gives up.
pub const MAX_ROUNDS: usize = 8;

/// Most identifiers a person may have to be merged into another: a merge moves them all in
/// one transaction (with the two person items), and DynamoDB's transactions take at most
/// 100 items. A person with more is kept apart rather than merged (logged).
pub const MAX_IDENTIFIERS_PER_PERSON: usize = 90;

/// The deployment's key for identifier hashes: 32 or more random bytes, base64-encoded
/// (`openssl rand -base64 32`). In Lambda from the SecureString SSM parameter named by
/// `RELAY_IDENTITY_KEY_PARAMETER`, locally from `RELAY_IDENTITY_KEY` or the data folder.
/// Changing it makes every known identifier unknown (new persons), so it is never rotated
/// in place. It never reaches a log or `Debug`.
#[derive(Clone)]
pub struct IdentityKey(Vec<u8>);

/// The identity key could not be used. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the identity key must be at least 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
)]
pub struct BadIdentityKey;

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(<redacted>)")
    }
}

impl IdentityKey {
    /// The key from its base64 form (standard alphabet, padding optional).
    pub fn from_base64(text: &SecretString) -> Result<Self, BadIdentityKey> {
        use base64::Engine;
        let trimmed = text.expose_secret().trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
            .map_err(|_| BadIdentityKey)?;
        Self::from_bytes(&bytes)
    }

    /// The key from its bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BadIdentityKey> {
        if bytes.len() < 32 {
            return Err(BadIdentityKey);
        }
        Ok(IdentityKey(bytes.to_vec()))
    }

    /// A new random key (32 bytes from the thread's CSPRNG, seeded by the OS): for a local
    /// relay's first run, which keeps it in its data folder.
    pub fn generate() -> Self {
        IdentityKey(rand::random::<[u8; 32]>().to_vec())
    }

    /// The key's base64 form, to keep it (a local relay's data folder).
    pub fn to_base64(&self) -> SecretString {
        use base64::Engine;
        SecretString::from(base64::engine::general_purpose::STANDARD.encode(&self.0))
    }

    /// The keyed hash of one identifier (`email:ann@example.com`, `hubspot:901`).
    pub fn hash(&self, identifier: &str) -> IdentifierHash {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for HMAC.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(identifier.as_bytes());
        IdentifierHash(hex::encode(mac.finalize().into_bytes()))
    }
}

/// HMAC-SHA256 (64 lowercase hex) of one identifier under the [`IdentityKey`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentifierHash(String);

impl IdentifierHash {
    pub fn as_hex(&self) -> &str {
        &self.0
    }

    /// A hash as an adapter stored it; `None` unless 64 lowercase hex digits.
    pub fn from_stored(text: &str) -> Option<Self> {
        let ok = text.len() == 64
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| IdentifierHash(text.to_string()))
    }

    /// `idn#<hex>`: the identifier's item.
    pub fn pk(&self) -> String {
        format!("idn#{}", self.0)
    }
}

impl fmt::Debug for IdentifierHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentifierHash({}…)", &self.0[..12.min(self.0.len())])
    }
}

/// `per#<person id>`: the person's item.
pub fn person_pk(person: &PersonId) -> String {
    format!("per#{person}")
}

/// A person as stored.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PersonRecord {
    /// The identifiers pointing at this person.
    pub ids: BTreeSet<IdentifierHash>,
    /// Bumped by every write that changes `ids`; a merge is fenced by it.
    pub version: u64,
    /// Set once this person was merged into another.
    pub merged_into: Option<PersonId>,
}

/// What a conditional identity write found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// A condition failed: another resolution wrote first. Nothing was written.
    Conflict,
}

/// Ingest's optimistic first step for one event: its claim (with its delivery-log entry,
/// when there is one) and its person, in ONE all-or-nothing write
/// ([`IdentityStore::claim_with_person`]). The guess is either a new person holding every
/// identifier the event carries (a signup) or a person this process saw the identifiers
/// resolve to before ([`PersonCache`]), checked against the stored identifiers in the same
/// write — never trusted. When the guess holds, that one write is all ingest costs;
/// otherwise it fails, writes nothing, and its answer says what it met, so nothing has to
/// be read again.
#[derive(Clone, Copy, Debug)]
pub struct PersonClaim<'a> {
    pub key: &'a IdempotencyKey,
    pub payload_hash: &'a PayloadHash,
    pub lease_until: DateTime<Utc>,
    /// The delivery-log entry the claim carries (the journal's `claim_recorded`).
    pub entry: Option<&'a EventEntry>,
    pub person: &'a PersonId,
    /// The event's identifier hashes, sorted, without repeats.
    pub ids: &'a [IdentifierHash],
    pub guess: PersonGuess,
}

/// What a [`PersonClaim`] assumes about its person.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PersonGuess {
    /// `person` is new: none of `ids` is known; the write creates it with all of them.
    New,
    /// Every one of `ids` already points to `person`; the write checks that they still do.
    Known,
}

/// What [`IdentityStore::claim_with_person`] came to.
#[derive(Clone, Debug)]
pub enum ClaimedWithPerson {
    /// The claim is ours and the guess held: the person was created with every
    /// identifier, or every identifier points to it.
    Claimed(Claim),
    /// Nothing was written: a condition failed, and this is what the write met.
    Refused {
        /// The claim's standing when it could not be taken (a duplicate, a reused event
        /// id); `None` when it was free.
        claim: Option<ClaimOutcome>,
        /// Where the identifiers already known point (strongly consistent: the state the
        /// write was checked against).
        known: BTreeMap<IdentifierHash, PersonId>,
    },
    /// Nothing was written and nothing learnt (a concurrent transaction on the same items):
    /// claim and resolve step by step.
    Conflict,
}

/// Where identifiers resolved to in this process, the most recently used kept, at most
/// `capacity` identifiers: ingest's guess for a [`PersonGuess::Known`] claim. Only a guess:
/// the claim's own write checks it against the stored identifiers, so a stale entry (a
/// merge since) costs a second write, never a wrong person. Holds hashes and person ids
/// only, no personal data.
pub struct PersonCache {
    entries: std::sync::Mutex<lru::LruCache<IdentifierHash, PersonId>>,
}

/// Identifiers a [`PersonCache`] keeps by default (about 1.5 MB).
pub const PERSON_CACHE_CAPACITY: usize = 10_000;

impl PersonCache {
    pub fn new(capacity: std::num::NonZeroUsize) -> Self {
        PersonCache {
            entries: std::sync::Mutex::new(lru::LruCache::new(capacity)),
        }
    }

    /// The person every one of `ids` resolved to, when this process knows them all and
    /// they agree.
    pub fn guess(&self, ids: &[IdentifierHash]) -> Option<PersonId> {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut person: Option<PersonId> = None;
        for id in ids {
            let found = entries.get(id)?;
            match &person {
                Some(p) if p != found => return None,
                Some(_) => {}
                None => person = Some(found.clone()),
            }
        }
        person
    }

    /// Remembers that `ids` resolved to `person`.
    pub fn remember(&self, ids: &[IdentifierHash], person: &PersonId) {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for id in ids {
            entries.put(id.clone(), person.clone());
        }
    }
}

impl Default for PersonCache {
    fn default() -> Self {
        Self::new(
            std::num::NonZeroUsize::new(PERSON_CACHE_CAPACITY)
                .unwrap_or(std::num::NonZeroUsize::MIN),
        )
    }
}

impl fmt::Debug for PersonCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonCache")
    }
}

/// Where identifiers point, and the conditional writes that change it. Every method is one
/// backend call and all-or-nothing.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Takes an event's claim and, per `claim.guess`, creates `claim.person` with
    /// `claim.ids` or checks that they all point to it, in one all-or-nothing write to the
    /// backend that also keeps the claims (see [`PersonClaim`]). A backend whose claims live elsewhere, or that has no
    /// multi-item conditional writes, answers `None` (the default): ingest then claims and
    /// resolves step by step, as it does after [`ClaimedWithPerson::Refused`].
    async fn claim_with_person(
        &self,
        claim: &PersonClaim<'_>,
    ) -> Result<Option<ClaimedWithPerson>, StoreError> {
        let _ = claim;
        Ok(None)
    }

    /// Which person each of `ids` points to (strongly consistent); unknown ones are absent.
    async fn find(
        &self,
        ids: &[IdentifierHash],
    ) -> Result<BTreeMap<IdentifierHash, PersonId>, StoreError>;

    /// The person's record; `None` if it does not exist.
    async fn person(&self, person: &PersonId) -> Result<Option<PersonRecord>, StoreError>;

    /// Points each of `ids` (none of which may point anywhere yet) at `person` and adds
    /// them to its `ids`, bumping `version`. `create`: the person must not exist yet and is
    /// created with `version` 1; otherwise it must exist and not be merged.
    async fn attach(
        &self,
        person: &PersonId,
        ids: &[IdentifierHash],
        create: bool,
    ) -> Result<Written, StoreError>;

    /// Merges `loser` into `survivor`: every id in `loser_record.ids` (each must still
    /// point at `loser`) points at `survivor` and is added to its `ids` (version bumped;
    /// the survivor must exist and not be merged), and `loser` gets `merged_into` — only if
    /// `loser`'s version is still `loser_record.version` and it is not merged.
    async fn merge(
        &self,
        loser: &PersonId,
        loser_record: &PersonRecord,
        survivor: &PersonId,
    ) -> Result<Written, StoreError>;
}

/// Where identifiers are resolved to persons: the store and the deployment's key for
/// identifier hashes. Every instance of a deployment that resolves — ingest, and the worker
/// when it completes a change from its source — must share both, or one person gets two ids.
#[derive(Clone)]
pub struct Identity {
    pub store: std::sync::Arc<dyn IdentityStore>,
    pub key: IdentityKey,
}

impl Identity {
    /// The person `contact`'s identifiers resolve to (see [`resolve`]).
    pub async fn resolve_contact(&self, contact: &Contact) -> Result<Resolved, IdentityError> {
        resolve(self.store.as_ref(), &self.key, &identifiers_of(contact)).await
    }
}

/// What [`resolve`] settled on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub person: PersonId,
    /// True when this resolution created the person.
    pub created: bool,
    /// Persons merged into `person` by this resolution (oldest first).
    pub merged: Vec<PersonId>,
    /// Backend calls made.
    pub calls: u32,
}

/// Why resolution failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Lost the race [`MAX_ROUNDS`] times in a row: heavy contention on one person.
    #[error("identity resolution kept losing races ({MAX_ROUNDS} rounds); retry later")]
    Contended,
}

impl IdentityError {
    /// True when the same resolution later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            IdentityError::Store(e) => e.is_retryable(),
            IdentityError::Contended => true,
        }
    }
}

/// The identifiers of `contact`, as they are hashed: its key (a source's own id, or the
/// e-mail or phone key when the source has none), its e-mail and its phone, without
/// repeats. Personal data: hash them, never log them.
pub fn identifiers_of(contact: &Contact) -> Vec<String> {
    let mut out: Vec<String> = vec![contact.key.as_str().to_string()];
    if let Some(email) = &contact.email {
        out.push(ContactKey::from_email(email).as_str().to_string());
    }
    if let Some(phone) = &contact.phone {
        out.push(ContactKey::from_phone(phone).as_str().to_string());
    }
    let mut seen = BTreeSet::new();
    out.retain(|id| seen.insert(id.clone()));
    out
}

/// A new person id (UUIDv7: older persons sort first).
pub fn new_person_id() -> PersonId {
    PersonId::from_uuid_bytes(*uuid::Uuid::now_v7().as_bytes())
}

/// Resolves `identifiers` (see [`identifiers_of`]) to one person, creating or merging as
/// the module docs describe.
pub async fn resolve(
    store: &dyn IdentityStore,
    key: &IdentityKey,
    identifiers: &[String],
) -> Result<Resolved, IdentityError> {
    resolve_hashed(store, &hash_identifiers(key, identifiers), None).await
}

/// The keyed hashes of `identifiers`, sorted, without repeats.
pub fn hash_identifiers(key: &IdentityKey, identifiers: &[String]) -> Vec<IdentifierHash> {
    let mut ids: Vec<IdentifierHash> = identifiers.iter().map(|i| key.hash(i)).collect();
    ids.sort();
    ids.dedup();
    ids
}

/// [`resolve`] for hashes already made; `known`, when given, is where the identifiers
/// pointed a moment ago (what a refused [`IdentityStore::claim_with_person`] met), used
/// for the first round instead of reading them again — so a known person whose
/// identifiers are all known costs no call here.
pub async fn resolve_hashed(
    store: &dyn IdentityStore,
    ids: &[IdentifierHash],
    mut known: Option<BTreeMap<IdentifierHash, PersonId>>,
) -> Result<Resolved, IdentityError> {
    let mut calls = 0u32;
    let mut merged = Vec::new();
    'round: for _ in 0..MAX_ROUNDS {
        let found = match known.take() {
            Some(found) => found,
            None => {
                calls += 1;
                store.find(ids).await?
            }
        };
        let persons: BTreeSet<&PersonId> = found.values().collect();
        let Some(&survivor) = persons.first() else {
            let person = new_person_id();
            calls += 1;
            match store.attach(&person, ids, true).await? {
                Written::Done => {
                    return Ok(Resolved {
                        person,
                        created: true,
                        merged,
                        calls,
                    });
                }
                Written::Conflict => continue 'round,
            }
        };
        let survivor = survivor.clone();
        for loser in persons.iter().skip(1) {
            calls += 1;
            let Some(record) = store.person(loser).await? else {
                continue 'round;
            };
            if record.merged_into.is_some() {
                continue 'round;
            }
            if record.ids.len() > MAX_IDENTIFIERS_PER_PERSON {
                // Too many to move in one transaction: the two stay apart (said in the log),
                // and the change goes to the survivor. Never an error the sender would retry
                // for ever.
                tracing::warn!(%survivor, kept_apart = %loser, "identity: a person with too many identifiers to merge; kept apart");
                continue;
            }
            calls += 1;
            match store.merge(loser, &record, &survivor).await? {
                Written::Done => {
                    tracing::info!(%survivor, merged = %loser, "identity: two persons were one; merged into the older");
                    merged.push((*loser).clone());
                }
                Written::Conflict => continue 'round,
            }
        }
        let missing: Vec<IdentifierHash> = ids
            .iter()
            .filter(|id| !found.contains_key(*id))
            .cloned()
            .collect();
        if !missing.is_empty() {
            calls += 1;
            if store.attach(&survivor, &missing, false).await? == Written::Conflict {
                continue 'round;
            }
        }
        return Ok(Resolved {
            person: survivor,
            created: false,
            merged,
            calls,
        });
    }
    Err(IdentityError::Contended)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_hashes_are_keyed_hmac_sha256() {
        // RFC 4231 test case 2 uses a short key; HMAC itself is checked by the `hmac`
        // crate. Here: the keyed hash differs from the plain SHA-256 and from another key's.
        let key = IdentityKey::from_bytes(&[7; 32]).unwrap();
        let other = IdentityKey::from_bytes(&[8; 32]).unwrap();
        let h = key.hash("email:ann@example.com");
        assert_eq!(h.as_hex().len(), 64);
        assert_ne!(h, other.hash("email:ann@example.com"));
        assert_ne!(
            h.as_hex(),
            crate::store::ContactKeyHash::of("email:ann@example.com").as_hex()
        );
        assert_eq!(h, key.hash("email:ann@example.com"));
        assert!(!format!("{h:?}").contains(h.as_hex()));
        assert!(format!("{key:?}").contains("redacted"));
        assert_eq!(IdentifierHash::from_stored(h.as_hex()), Some(h.clone()));
        assert_eq!(IdentifierHash::from_stored("xyz"), None);
        assert!(IdentityKey::from_bytes(&[1; 16]).is_err());
    }

    #[test]
    fn the_person_cache_guesses_only_when_it_knows_every_identifier_and_they_agree() {
        let key = IdentityKey::from_bytes(&[7; 32]).unwrap();
        let (email, phone, hubspot) = (
            key.hash("email:ann@example.com"),
            key.hash("phone:+4915123456789"),
            key.hash("hubspot:901"),
        );
        let ann = new_person_id();
        let bob = new_person_id();
        let cache = PersonCache::new(std::num::NonZeroUsize::new(3).unwrap());
        assert_eq!(cache.guess(std::slice::from_ref(&email)), None);
        cache.remember(&[email.clone(), phone.clone()], &ann);
        assert_eq!(
            cache.guess(&[email.clone(), phone.clone()]),
            Some(ann.clone())
        );
        assert_eq!(cache.guess(std::slice::from_ref(&phone)), Some(ann.clone()));
        // An identifier it has not seen: no guess (the event may bring someone new).
        assert_eq!(cache.guess(&[email.clone(), hubspot.clone()]), None);
        // Two persons: no guess (a merge is due; the table decides).
        cache.remember(std::slice::from_ref(&hubspot), &bob);
        assert_eq!(cache.guess(&[email.clone(), hubspot]), None);
        // Bounded: a fourth identifier pushes out the least recently used (the e-mail was
        // used last by the guess above, the phone before it).
        cache.remember(&[key.hash("pipedrive:42")], &bob);
        assert_eq!(cache.guess(std::slice::from_ref(&phone)), None);
        assert_eq!(cache.guess(std::slice::from_ref(&email)), Some(ann));
        assert_eq!(format!("{cache:?}"), "PersonCache");
    }

    #[test]
    fn hmac_matches_rfc_4231_case_1() {
        // Key = 0x0b * 20 is shorter than our minimum; check the primitive directly.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x0b; 20]).unwrap();
        mac.update(b"Hi There");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }
}
