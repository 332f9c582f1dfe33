//! The ingest use case, independent of HTTP or Lambda: verify → map → claim → enqueue.
//!
//! Each event of a delivery costs **one DynamoDB write** where it can: its claim under the
//! sender's event id (a conditional write that also carries the delivery-log entry) and, in
//! the same transaction, its person — a new one with all its identifiers, or the one this
//! instance resolved them to before, checked there (`claim_and_resolve`; a refused write
//! says what it met, so a known person new to this instance costs one more, the claim).
//! Then one message per (event, vendor) goes to the queue in SQS batches, and the sender
//! gets `202`. Nothing confirms the claim afterwards; a failed enqueue releases it (a second
//! write, on failure only) so the sender's retry claims it afresh.
//!
//! Why one write is safe. A record written before the enqueue cannot tell "enqueued" from
//! "the invocation died before enqueueing", so a duplicate that meets a claim with the same
//! meaning (`InProgress`: claimed, never confirmed) **enqueues its own copy** and answers
//! `2xx` as a duplicate; a duplicate that meets `Completed` (a record confirmed before
//! ingest stopped confirming) enqueues nothing. So:
//! * nothing is lost — every `2xx` follows a successful enqueue of this request's own
//!   messages or a confirmed one, and a claimant that died leaves a claim whose duplicates
//!   still enqueue;
//! * no sender waits or sees `409` for a retry, however soon it comes;
//! * a duplicate may put a second copy of a delivery on the queue. The worker makes that
//!   harmless: its link lease refuses a delivery id already applied (one DynamoDB call, no
//!   vendor call), serialises two copies in flight (the second waits, then is refused), and
//!   a copy too old for the link's memory plans nothing, since every field is sent only when
//!   it ranks above what was applied (`tests/tests/worker_reliability.rs` proves it on
//!   DynamoDB Local against the stateful vendors). The cost moves to duplicates, which are
//!   rare: a first delivery saves a write, a duplicate costs one message and one link call
//!   per vendor.
//!
//! A claim is never taken over (see `store::idempotency`): the duplicate's copy makes
//! taking it unnecessary, and the first claim's delivery log stays as it is.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::future::join_all;
use serde_json::Value;

use super::error::IngestError;
use super::metrics::IngestMetrics;
pub use super::outcome::{Accepted, EventWarning, RefusedEvent};
use super::signature::InboundRequest;
pub use super::verifiers::{SetupError, SourceSecrets};
use super::verifiers::{VerifierSet, Verifiers};
use crate::delivery::DeliveryMessage;
use crate::mapping::{
    EventDefaults, EventOutcome, MappedChange, MappedEvent, Mappings, Route, SourceMapping,
};
use crate::queue::{OutboundMessage, Queue};
use crate::store::identity::{hash_identifiers, identifiers_of, new_person_id, resolve_hashed};
use crate::store::{
    Claim, ClaimOutcome, ClaimedWithPerson, Clock, DEFAULT_JOURNAL_TTL, EventEntry, IdempotencyKey,
    IdempotencyStore, Journal, PayloadHash, PersonCache, PersonClaim, PersonGuess, RawId, RawKey,
    RawRecord, Resolved, StoreError, mask_contact,
};

/// The delivery log ingest records into, and the key raw requests are sealed with (none:
/// raw requests are not kept, and a replay can only re-send the messages as they are).
#[derive(Clone)]
pub struct Recording {
    pub journal: Arc<dyn Journal>,
    pub raw_key: Option<RawKey>,
    /// How long raw requests are kept (the log's TTL).
    pub ttl: TimeDelta,
}

impl Recording {
    pub fn new(journal: Arc<dyn Journal>, raw_key: Option<RawKey>) -> Self {
        Self {
            journal,
            raw_key,
            ttl: DEFAULT_JOURNAL_TTL,
        }
    }
}

/// A request kept (sealed) for a replay, before it is stored.
struct RawRequest<'a> {
    source: &'a str,
    body: &'a [u8],
    fallback_event_id: String,
    received_at: DateTime<Utc>,
}

/// Largest body accepted (256 KiB, SQS's message limit and far above any real webhook).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How long a claim is held when the caller gives no deadline (local runs).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A webhook request as received, with the route it came in on.
#[derive(Clone, Copy)]
pub struct WebhookDelivery<'a> {
    pub route: Route,
    pub source: &'a str,
    pub request: InboundRequest<'a>,
    pub content_type: Option<&'a str>,
    /// The invocation's deadline (Lambda), bounding how long the claim is held.
    pub deadline: Option<DateTime<Utc>>,
}

/// The ingest service; built once per cold start and shared by all requests.
pub struct Ingest {
    mappings: Arc<Mappings>,
    verifiers: Verifiers,
    store: Arc<dyn IdempotencyStore>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    metrics: Arc<IngestMetrics>,
    recording: Option<Recording>,
    identity: Identity,
    /// Where identifiers resolved to lately: the guess of each claim's single write.
    persons: PersonCache,
}

pub use crate::store::identity::Identity;

impl Ingest {
    /// Builds the verifiers of every webhook source that has secrets. Sources without
    /// secrets stay disabled (answering 404 `source_not_configured`) and are returned so the
    /// caller can log them; a secret that cannot be used is an error.
    pub fn new(
        mappings: Arc<Mappings>,
        secrets: &SourceSecrets,
        store: Arc<dyn IdempotencyStore>,
        identity: Identity,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Vec<String>), SetupError> {
        let mut set = VerifierSet::build(&mappings, secrets)?;
        let disabled = std::mem::take(&mut set.disabled);
        Ok((
            Ingest {
                mappings,
                verifiers: Verifiers::fixed(set),
                store,
                queue,
                clock,
                metrics: Arc::new(IngestMetrics::in_memory()),
                recording: None,
                identity,
                persons: PersonCache::default(),
            },
            disabled,
        ))
    }

    /// Counts into `metrics` (EMF in Lambda) instead of the default in-memory counters.
    pub fn with_metrics(mut self, metrics: Arc<IngestMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Checks signatures with `verifiers` (e.g. secrets re-read while running) instead.
    pub fn with_verifiers(mut self, verifiers: Verifiers) -> Self {
        self.verifiers = verifiers;
        self
    }

    /// Records each accepted event in the delivery log (in the claim's own write) and keeps
    /// each accepted request, sealed, for a replay that maps it again.
    pub fn with_recording(mut self, recording: Recording) -> Self {
        self.recording = Some(recording);
        self
    }

    pub fn mappings(&self) -> &Mappings {
        &self.mappings
    }

    /// The ingest counters (accepted, duplicates, ignored, refused, fields dropped).
    pub fn metrics(&self) -> &IngestMetrics {
        &self.metrics
    }

    /// Accepts one webhook delivery.
    pub async fn accept_webhook(
        &self,
        delivery: WebhookDelivery<'_>,
    ) -> Result<Accepted, IngestError> {
        let unknown = || IngestError::UnknownSource {
            source_name: delivery.source.to_string(),
        };
        let source = self
            .mappings
            .source(delivery.source)
            .filter(|s| s.route == delivery.route)
            .ok_or_else(unknown)?;
        let body = delivery.request.body;
        if body.len() > MAX_BODY_BYTES {
            return Err(IngestError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        check_content_type(delivery.content_type)?;
        let now = self.clock.now();
        let verified = (self.verifiers)
            .verify(&source.name, &delivery.request, now)
            .await?;
        let payload: Value =
            serde_json::from_slice(body).map_err(|e| IngestError::InvalidJson {
                line: e.line(),
                column: e.column(),
            })?;
        let defaults = EventDefaults {
            event_id: verified
                .delivery_id
                .unwrap_or_else(|| PayloadHash::of(body).to_hex()),
            received_at: now,
        };
        let events = source.map(&payload, &defaults)?;
        let raw = RawRequest {
            source: &source.name,
            body,
            fallback_event_id: defaults.event_id.clone(),
            received_at: now,
        };
        self.claim_and_enqueue(
            source,
            events,
            self.lease_until(now, delivery.deadline),
            now,
            Some(raw),
        )
        .await
    }

    /// Accepts one EventBridge event from the user's own apps (authenticated by IAM).
    pub async fn accept_event(
        &self,
        event: &Value,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Accepted, IngestError> {
        let detail_type = event
            .get("detail-type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let source = self
            .mappings
            .source_for_detail_type(detail_type)
            .ok_or_else(|| IngestError::UnknownDetailType {
                detail_type: detail_type.to_string(),
            })?;
        let now = self.clock.now();
        let fallback_id = event
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| PayloadHash::of(event.to_string().as_bytes()).to_hex());
        let events = source.map(
            event,
            &EventDefaults {
                event_id: fallback_id.clone(),
                received_at: now,
            },
        )?;
        let body = event.to_string();
        let raw = RawRequest {
            source: &source.name,
            body: body.as_bytes(),
            fallback_event_id: fallback_id,
            received_at: now,
        };
        self.claim_and_enqueue(
            source,
            events,
            self.lease_until(now, deadline),
            now,
            Some(raw),
        )
        .await
    }

    fn lease_until(&self, now: DateTime<Utc>, deadline: Option<DateTime<Utc>>) -> DateTime<Utc> {
        deadline
            .filter(|d| *d > now)
            .unwrap_or_else(|| now + TimeDelta::from_std(DEFAULT_LEASE).unwrap_or_default())
    }

    async fn claim_and_enqueue(
        &self,
        source: &SourceMapping,
        events: Vec<MappedEvent>,
        lease_until: DateTime<Utc>,
        received_at: DateTime<Utc>,
        raw: Option<RawRequest<'_>>,
    ) -> Result<Accepted, IngestError> {
        let mut outcome = Accepted::default();
        let mut changes: Vec<MappedChange> = Vec::new();
        // What each change means (its claim's fingerprint), computed once.
        let mut hashes: Vec<PayloadHash> = Vec::new();
        let mut first_refusal: Option<IngestError> = None;
        let mut seen: HashMap<String, PayloadHash> = HashMap::new();
        for event in events {
            match event.outcome {
                EventOutcome::Change(mapped)
                    if message_bytes(source, &mapped) > MAX_MESSAGE_BYTES =>
                {
                    // Only a mapping that copies large values into several fields gets
                    // here; refused now, it would fail at the queue on every retry.
                    let error = IngestError::EventTooLarge {
                        limit: MAX_MESSAGE_BYTES,
                    };
                    tracing::warn!(source = %source.name, event_id = %event.event_id, code = error.code(), "event refused");
                    outcome.refused.push(RefusedEvent {
                        event: event.event_id,
                        code: error.code(),
                        message: error.to_string(),
                    });
                    first_refusal.get_or_insert(error);
                }
                EventOutcome::Change(mapped) => {
                    // A batch that carries one event twice: the second copy is a duplicate
                    // (or, meaning something else, a conflict) of the first, decided here —
                    // claiming it would meet our own claim in progress.
                    outcome.combined += mapped.combined;
                    let hash = meaning_hash(&mapped);
                    match seen.get(&mapped.change.event.event_id) {
                        Some(first) if *first == hash => outcome.duplicates += 1,
                        Some(_) => {
                            tracing::warn!(source = %source.name, event_id = %mapped.change.event.event_id, "one delivery carries an event id twice with different contents");
                            outcome.conflicts += 1;
                        }
                        None => {
                            seen.insert(mapped.change.event.event_id.clone(), hash);
                            changes.push(mapped);
                            hashes.push(hash);
                        }
                    }
                }
                EventOutcome::Repeated { conflicting: false } => outcome.duplicates += 1,
                EventOutcome::Repeated { conflicting: true } => {
                    tracing::warn!(source = %source.name, event_id = %event.event_id, "one delivery carries an event id twice with different contents");
                    outcome.conflicts += 1;
                }
                EventOutcome::Ignored { kind } => {
                    tracing::info!(source = %source.name, event_id = %event.event_id, %kind, "event kind not mapped; ignored");
                    outcome.ignored += 1;
                }
                EventOutcome::Refused(error) => {
                    tracing::warn!(source = %source.name, event_id = %event.event_id, code = error.code(), %error, "event refused");
                    outcome.refused.push(RefusedEvent {
                        event: event.event_id,
                        code: error.code(),
                        message: error.to_string(),
                    });
                    first_refusal.get_or_insert(IngestError::Unmappable(error));
                }
            }
        }

        // The request, sealed, for a replay after a mapping fix: one write per request that
        // takes a claim (a sender's retry overwrites the same item).
        // Its id is known before it is written: the write waits until a claim is taken, so
        // a request answered as a duplicate costs nothing more.
        let raw_id = match (&raw, &self.recording) {
            (
                Some(raw),
                Some(Recording {
                    raw_key: Some(_), ..
                }),
            ) => Some(RawId::of(raw.source, raw.body)),
            _ => None,
        };
        let entries: Vec<Option<EventEntry>> = changes
            .iter()
            .map(|mapped| {
                self.recording.as_ref().map(|_| EventEntry {
                    source: source.name.clone(),
                    event_id: mapped.change.event.event_id.clone(),
                    received_at,
                    occurred_at: mapped.change.event.occurred_at,
                    kind: kind_name(mapped),
                    contact: mask_contact(mapped.change.contact.key.as_str()),
                    warnings: mapped
                        .warnings
                        .iter()
                        .map(|w| format!("{}: {}", w.field, w.code))
                        .collect(),
                    vendors: source.vendors.clone(),
                    raw: raw_id.clone(),
                })
            })
            .collect();

        // Claim every change and resolve its person: for a new person one write in all
        // (see `claim_and_resolve`).
        let attempts = join_all(changes.iter().zip(&hashes).zip(&entries).map(
            |((mapped, hash), entry)| {
                self.claim_and_resolve(mapped, hash, lease_until, entry.as_ref())
            },
        ))
        .await;
        let mut claimed: Vec<(Claim, &MappedChange)> = Vec::new();
        // What goes on the queue, with its person when it is already resolved: the claimed
        // changes first (in `claimed`'s order: a failed enqueue's indexes name claims),
        // then duplicates of claims never confirmed, enqueued again (see the module docs).
        let mut to_send: Vec<(&MappedChange, Option<Resolved>)> = Vec::new();
        let mut again: Vec<(&MappedChange, Option<Resolved>)> = Vec::new();
        let mut store_failed: Option<IngestError> = None;
        for (attempt, mapped) in attempts.into_iter().zip(&changes) {
            match attempt {
                Ok((ClaimOutcome::Claimed(claim), person)) => {
                    claimed.push((claim, mapped));
                    to_send.push((mapped, person));
                }
                Ok((ClaimOutcome::Completed { .. }, _)) => outcome.duplicates += 1,
                Ok((ClaimOutcome::InProgress { .. }, person)) => {
                    outcome.duplicates += 1;
                    outcome.enqueued_again += 1;
                    again.push((mapped, person));
                }
                Ok((ClaimOutcome::PayloadMismatch, _)) => {
                    tracing::warn!(source = %source.name, event_id = %mapped.change.event.event_id, "event id reused with a different payload");
                    outcome.conflicts += 1;
                }
                Err(StepError::Claim(error)) => {
                    tracing::error!(source = %source.name, %error, retryable = error.is_retryable(), "idempotency claim failed");
                    store_failed = Some(IngestError::of_store(
                        "idempotency store",
                        error.is_retryable(),
                    ));
                }
                Err(StepError::Identity(error)) => {
                    tracing::error!(source = %source.name, %error, retryable = error.is_retryable(), "identity resolution failed");
                    store_failed.get_or_insert(IngestError::of_store(
                        "identity store",
                        error.is_retryable(),
                    ));
                }
            }
        }
        if let Some(error) = store_failed {
            self.release_all(claimed.iter().map(|(c, _)| c)).await;
            return Err(error);
        }
        to_send.append(&mut again);

        let raw_id = match (raw, &self.recording) {
            (Some(raw), Some(recording)) if !claimed.is_empty() && raw_id.is_some() => {
                self.keep_raw(recording, raw).await
            }
            _ => None,
        };
        // Who each change is about, where the claim's write did not settle it: its
        // identifiers resolved to one person (see `store::identity`).
        let resolved = join_all(to_send.iter_mut().map(|(mapped, person)| async move {
            match person.take() {
                Some(person) => Ok(person),
                None => {
                    let contact = &mapped.change.contact;
                    let resolved = self.identity.resolve_contact(contact).await;
                    if let Ok(resolved) = &resolved {
                        let ids = hash_identifiers(&self.identity.key, &identifiers_of(contact));
                        self.persons.remember(&ids, &resolved.person);
                    }
                    resolved
                }
            }
        }))
        .await;
        let mut persons = Vec::with_capacity(resolved.len());
        let mut identity_failed = None;
        for result in resolved {
            match result {
                Ok(person) => {
                    outcome.identity.created += usize::from(person.created);
                    outcome.identity.merged += person.merged.len();
                    outcome.identity.calls += person.calls as usize;
                    persons.push(person);
                }
                Err(error) => {
                    tracing::error!(source = %source.name, %error, retryable = error.is_retryable(), "identity resolution failed");
                    identity_failed = Some(IngestError::of_store(
                        "identity store",
                        error.is_retryable(),
                    ));
                }
            }
        }
        if let Some(error) = identity_failed {
            self.release_all(claimed.iter().map(|(c, _)| c)).await;
            return Err(error);
        }
        let to_send: Vec<&MappedChange> = to_send.iter().map(|(mapped, _)| *mapped).collect();
        let failed = self
            .enqueue(source, &to_send, &persons, raw_id.as_ref())
            .await;
        // Only a failure costs a second write: the claims of events not enqueued are given
        // back, so the sender's retry claims them afresh. An enqueued claim stays as written.
        let released = claimed
            .iter()
            .enumerate()
            .filter(|(i, _)| failed.contains(i))
            .map(|(_, (claim, _))| claim);
        self.release_all(released).await;
        if !failed.is_empty() {
            return Err(IngestError::Unavailable { what: "queue" });
        }
        outcome.accepted = claimed.len();
        for (_, mapped) in &claimed {
            for warning in &mapped.warnings {
                // The field and why, never the value.
                tracing::warn!(source = %source.name, event_id = %mapped.change.event.event_id, field = %warning.field, code = warning.code, "field dropped: its value did not normalise");
                outcome.warnings.push(EventWarning {
                    // In a combined change, the sender's own event the field came from.
                    event: (warning.event.as_ref())
                        .unwrap_or(&mapped.change.event.event_id)
                        .clone(),
                    field: warning.field.clone(),
                    code: warning.code,
                });
            }
        }
        self.metrics.record(&source.name, &outcome);
        let usable = outcome.accepted + outcome.duplicates + outcome.ignored;
        if usable == 0 {
            if outcome.conflicts > 0 {
                return Err(IngestError::EventIdReused);
            }
            if let Some(error) = first_refusal {
                return Err(error);
            }
        }
        tracing::info!(source = %source.name, accepted = outcome.accepted, duplicates = outcome.duplicates, enqueued_again = outcome.enqueued_again, conflicts = outcome.conflicts, ignored = outcome.ignored, refused = outcome.refused.len(), warnings = outcome.warnings.len(), "delivery accepted");
        Ok(outcome)
    }

    /// Claims a change and, when that settles it, resolves its person too. First the
    /// optimistic single write ([`IdentityStore::claim_with_person`]: the claim with its
    /// log entry, a new person and all its identifiers) — everything a signup costs. When
    /// it is refused, what it met decides the rest without reading again: a duplicate
    /// needs no claim, and a known person whose identifiers are all known needs no
    /// identity call (one claim write in all, two calls). A backend without the single
    /// write, or a conflict, claims here and leaves the person to the caller (`None`).
    ///
    /// [`IdentityStore::claim_with_person`]: crate::store::IdentityStore::claim_with_person
    async fn claim_and_resolve(
        &self,
        mapped: &MappedChange,
        meaning: &PayloadHash,
        lease_until: DateTime<Utc>,
        entry: Option<&EventEntry>,
    ) -> Result<(ClaimOutcome, Option<Resolved>), StepError> {
        let event = &mapped.change.event;
        let key =
            IdempotencyKey::inbound(&event.source, &event.event_id).map_err(StepError::Claim)?;
        let ids = hash_identifiers(&self.identity.key, &identifiers_of(&mapped.change.contact));
        // A person this process saw these identifiers resolve to, checked in the write;
        // else the guess that the person is new.
        let (person, guess) = match self.persons.guess(&ids) {
            Some(person) => (person, PersonGuess::Known),
            None => (new_person_id(), PersonGuess::New),
        };
        let single = PersonClaim {
            key: &key,
            payload_hash: meaning,
            lease_until,
            entry,
            person: &person,
            ids: &ids,
            guess,
        };
        let (standing, known) = match self.identity.store.claim_with_person(&single).await {
            Ok(Some(ClaimedWithPerson::Claimed(claim))) => {
                self.persons.remember(&ids, &person);
                let resolved = Resolved {
                    person,
                    created: guess == PersonGuess::New,
                    merged: Vec::new(),
                    calls: 1,
                };
                return Ok((ClaimOutcome::Claimed(claim), Some(resolved)));
            }
            Ok(Some(ClaimedWithPerson::Refused { claim, known })) => (claim, Some(known)),
            Ok(Some(ClaimedWithPerson::Conflict) | None) => (None, None),
            Err(error) => return Err(StepError::Claim(error)),
        };
        let outcome = match standing {
            Some(outcome) => outcome,
            None => self
                .claim(mapped, meaning, lease_until, entry)
                .await
                .map_err(StepError::Claim)?,
        };
        let goes_on = matches!(
            outcome,
            ClaimOutcome::Claimed(_) | ClaimOutcome::InProgress { .. }
        );
        let Some(known) = known.filter(|_| goes_on) else {
            return Ok((outcome, None));
        };
        match resolve_hashed(self.identity.store.as_ref(), &ids, Some(known)).await {
            Ok(resolved) => {
                self.persons.remember(&ids, &resolved.person);
                Ok((outcome, Some(resolved)))
            }
            Err(error) => {
                if let ClaimOutcome::Claimed(claim) = &outcome {
                    // Not handed to the caller: give it back here.
                    self.release_all(std::iter::once(claim)).await;
                }
                Err(StepError::Identity(error))
            }
        }
    }

    /// One claim for a change, keyed by the sender's event id and fingerprinted by what the
    /// event means (`meaning`, see [`meaning_hash`]) — not by delivery metadata — so a sender's retry
    /// (HubSpot's `attemptNumber` + 1, Pipedrive's `meta.attempt`, a new signature or
    /// timestamp) is recognised as the same event.
    async fn claim(
        &self,
        mapped: &MappedChange,
        meaning: &PayloadHash,
        lease_until: DateTime<Utc>,
        entry: Option<&EventEntry>,
    ) -> Result<ClaimOutcome, StoreError> {
        let event = &mapped.change.event;
        let key = IdempotencyKey::inbound(&event.source, &event.event_id)?;
        match (&self.recording, entry) {
            (Some(recording), Some(entry)) => {
                recording
                    .journal
                    .claim_recorded(&key, meaning, lease_until, entry)
                    .await
            }
            _ => self.store.claim(&key, meaning, lease_until).await,
        }
    }

    /// Seals and stores the request; its id, or none when it could not be kept (the events
    /// still go on: only a re-mapping replay of them is lost, which the log says).
    async fn keep_raw(&self, recording: &Recording, raw: RawRequest<'_>) -> Option<RawId> {
        let key = recording.raw_key.as_ref()?;
        let id = RawId::of(raw.source, raw.body);
        let sealed = match key.seal(&RawRecord::aad(&id, raw.source), raw.body) {
            Ok(sealed) => sealed,
            Err(error) => {
                tracing::warn!(source = raw.source, %error, "could not seal the request; it is not kept for replay");
                return None;
            }
        };
        let record = RawRecord {
            id: id.clone(),
            source: raw.source.to_owned(),
            fallback_event_id: raw.fallback_event_id,
            received_at: raw.received_at,
            sealed,
            expires_at: crate::store::idempotency::expiry(raw.received_at, recording.ttl),
        };
        match recording.journal.put_raw(&record).await {
            Ok(()) => Some(id),
            Err(error) => {
                tracing::warn!(source = raw.source, %error, "could not keep the request for replay");
                None
            }
        }
    }

    /// Sends one message per (event, vendor); answers the indexes of the events that were
    /// not (fully) enqueued.
    async fn enqueue(
        &self,
        source: &SourceMapping,
        changes: &[&MappedChange],
        persons: &[Resolved],
        raw: Option<&RawId>,
    ) -> BTreeSet<usize> {
        let mut messages = Vec::with_capacity(changes.len() * source.vendors.len());
        for (i, (mapped, person)) in changes.iter().zip(persons).enumerate() {
            let mut change = mapped.change.clone();
            change.contact.person = Some(person.person.clone());
            for vendor in &source.vendors {
                let mut message = DeliveryMessage::new(*vendor, change.clone());
                message.merged.clone_from(&person.merged);
                message.raw = raw.cloned();
                let body = message.to_body();
                messages.push(OutboundMessage::new(format!("e{i}-{vendor}"), body));
            }
        }
        if messages.is_empty() {
            return BTreeSet::new();
        }
        match self.queue.send_batch(&messages).await {
            Ok(()) => BTreeSet::new(),
            Err(error) => {
                tracing::error!(source = %source.name, %error, "enqueue failed; releasing claims");
                let ids = error.failed_ids();
                if ids.is_empty() {
                    (0..changes.len()).collect()
                } else {
                    ids.iter()
                        .filter_map(|id| id.strip_prefix('e')?.split('-').next()?.parse().ok())
                        .collect()
                }
            }
        }
    }

    async fn release_all<'a>(&self, claims: impl Iterator<Item = &'a Claim>) {
        for result in join_all(claims.map(|c| self.store.release(c))).await {
            if let Err(error) = result {
                tracing::warn!(%error, "could not release a claim; its lease will expire");
            }
        }
    }
}

/// Why claiming or resolving one change failed.
enum StepError {
    Claim(StoreError),
    Identity(crate::store::IdentityError),
}

/// The change kind's name (`signup`, `created`, …).
fn kind_name(mapped: &MappedChange) -> String {
    serde_json::to_value(mapped.change.event.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Largest queue message body an event may make: SQS's 256 KiB, less room for the
/// message attributes.
pub const MAX_MESSAGE_BYTES: usize = crate::queue::MAX_BATCH_BYTES - 1024;

/// The size of the largest message `mapped` makes (one per vendor; they differ only in the
/// vendor's name).
fn message_bytes(source: &SourceMapping, mapped: &MappedChange) -> usize {
    source.vendors.first().map_or(0, |v| {
        DeliveryMessage::new(*v, mapped.change.clone())
            .to_body()
            .len()
            + 16
    })
}

/// The fingerprint of what an event means: its kind, when it happened (when the payload
/// says) and the contact as mapped. Delivery metadata — attempt counters, signatures,
/// timestamps of sending, the time of receipt — is not part of it.
fn meaning_hash(mapped: &MappedChange) -> PayloadHash {
    let change = &mapped.change;
    let meaning = serde_json::json!({
        "kind": change.event.kind,
        "occurred_at": mapped.occurred_at_given.then(|| change.event.occurred_at.timestamp_millis()),
        "contact": change.contact,
    });
    PayloadHash::of(meaning.to_string().as_bytes())
}

/// JSON bodies only: `application/json` or `application/<x>+json`, any parameters. A missing
/// header is tolerated (some senders omit it); the body must still parse.
fn check_content_type(content_type: Option<&str>) -> Result<(), IngestError> {
    let Some(value) = content_type else {
        return Ok(());
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(IngestError::UnsupportedMediaType {
            content_type: essence,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(check_content_type(Some("application/json")).is_ok());
        assert!(check_content_type(Some("Application/JSON; charset=utf-8")).is_ok());
        assert!(check_content_type(Some("application/cloudevents+json")).is_ok());
        assert!(check_content_type(None).is_ok());
        let err = check_content_type(Some("application/x-www-form-urlencoded")).unwrap_err();
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (415, "unsupported_media_type")
        );
    }
}
