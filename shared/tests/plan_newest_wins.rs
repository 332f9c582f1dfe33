//! "Newest value wins, always" (issue 13): whatever order the changes of one contact arrive
//! in, however often each is redelivered, every vendor field ends up holding the value of
//! the change with the highest version that set it — also when that change carried the
//! value already applied and so sent nothing. Between changes of equal version the greater
//! fingerprint wins, so the outcome does not depend on the arrival order either.
//!
//! The exception is the one Channel.io imposes: `profileOnce.*` fields are set only where
//! empty, so the vendor keeps the first value it ever received.
//!
//! The vendors are simulated as the pages in `../shared/vendor-docs/` describe what each
//! request does to the record; the link is updated with the worker's own rule
//! ([`record_applied`]), after a sync and after a skip alike.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use proptest::prelude::*;
use relay_shared::delivery::DeliveryMessage;
use relay_shared::mapping::vendor::canonical_value;
use relay_shared::mapping::{CanonicalField, Mappings};
use relay_shared::model::{
    ChangeKind, Contact, ContactChange, ContactKey, Email, PhoneE164, PhoneRegion, SyncEvent,
};
use relay_shared::plan::{
    PlanError, PlannedRequest, VendorState, coalesce, fingerprint, plan_channelio, plan_chatwoot,
    plan_hood, plan_omnivibe, record_applied,
};
use relay_shared::queue::memory::MemoryQueue;
use relay_shared::queue::{ReceiptHandle, ReceivedMessage};
use relay_shared::store::memory::MemoryStore;
use relay_shared::store::{Clock, SystemClock};
use relay_shared::vendors::{SyncOutcome, Vendor};
use relay_shared::worker::{Disposition, Metrics, MetricsOutput, RetryPolicy, Targets, Worker};
use serde_json::{Value, json};
use support::fake_vendor::FakeVendor;

const VENDORS: [Vendor; 4] = [
    Vendor::Hood,
    Vendor::Channelio,
    Vendor::Chatwoot,
    Vendor::Omnivibe,
];
const CHATWOOT_ACCOUNT: u64 = 1;
const CREATED_ID: &str = "1";

fn mappings() -> &'static Mappings {
    static M: OnceLock<Mappings> = OnceLock::new();
    M.get_or_init(|| Mappings::builtin().expect("built-in mappings load"))
}

/// The built-in mapping of `vendor`: canonical field → vendor field.
fn entries(vendor: Vendor) -> &'static [(CanonicalField, String)] {
    let v = &mappings().vendors;
    match vendor {
        Vendor::Hood => v.hood().unwrap().fields.entries(),
        Vendor::Channelio => v.channelio().unwrap().fields.entries(),
        Vendor::Chatwoot => v.chatwoot().unwrap().entries(),
        Vendor::Omnivibe => v.omnivibe().unwrap().fields.entries(),
    }
}

/// The vendor field the contact's name goes to.
fn name_field(vendor: Vendor) -> &'static str {
    match vendor {
        Vendor::Hood => "full_name",
        Vendor::Channelio => "profile.name",
        Vendor::Chatwoot | Vendor::Omnivibe => "name",
    }
}

fn key() -> ContactKey {
    ContactKey::external("crm", "4711").unwrap()
}

fn at(version_ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap() + TimeDelta::milliseconds(version_ms)
}

fn change(event_id: &str, version_ms: i64, mut contact: Contact) -> ContactChange {
    // Ingest's identity step gives every change its person before any plan.
    contact.person = Some(relay_core::model::PersonId::from_uuid_bytes([0x47; 16]));
    ContactChange {
        event: SyncEvent {
            source: "prop".into(),
            event_id: event_id.into(),
            occurred_at: at(version_ms),
            kind: ChangeKind::Updated,
        },
        contact,
        versions: Default::default(),
    }
}

fn version(change: &ContactChange) -> i64 {
    change.event.occurred_at.timestamp_millis()
}

/// One contact's record at one vendor, and the link the worker keeps for it.
struct Sim {
    vendor: Vendor,
    state: VendorState,
    /// Vendor field (as the mapping names it) → value held.
    record: BTreeMap<String, Value>,
    exists: bool,
}

impl Sim {
    fn new(vendor: Vendor) -> Self {
        Sim {
            vendor,
            state: VendorState::default(),
            record: BTreeMap::new(),
            exists: false,
        }
    }

    /// A record that exists and whose id the link knows (Hood then PATCHes, Chatwoot PUTs).
    fn known(vendor: Vendor) -> Self {
        let mut sim = Sim::new(vendor);
        sim.state.vendor_id = Some(CREATED_ID.into());
        sim.exists = true;
        sim
    }

    /// Plans `change` from the link, applies the requests to the record, then updates the
    /// link as the worker does (the same rule after a sync and after a skip). Returns the
    /// requests sent.
    fn deliver(&mut self, change: &ContactChange) -> Result<Vec<PlannedRequest>, PlanError> {
        let v = &mappings().vendors;
        let state = &self.state;
        let (requests, applied) = match self.vendor {
            Vendor::Hood => {
                let p = plan_hood(change, state, v.hood().unwrap(), &BTreeSet::new())?;
                (p.plan.requests(), p.applied)
            }
            Vendor::Channelio => {
                let p = plan_channelio(change, state, v.channelio().unwrap())?;
                (p.plan.requests(), p.applied)
            }
            Vendor::Chatwoot => {
                let p = plan_chatwoot(change, state, v.chatwoot().unwrap())?;
                (p.plan.requests(CHATWOOT_ACCOUNT), p.applied)
            }
            Vendor::Omnivibe => {
                let p = plan_omnivibe(change, state, v.omnivibe().unwrap())?;
                (p.plan.requests(), p.applied)
            }
        };
        for request in &requests {
            self.apply(request);
        }
        if !requests.is_empty() && self.vendor != Vendor::Omnivibe {
            // The sync reports the id of the record it created or upserted.
            self.state
                .vendor_id
                .get_or_insert_with(|| CREATED_ID.into());
        }
        self.state.applied = record_applied(&self.state.applied, &applied);
        Ok(requests)
    }

    fn apply(&mut self, r: &PlannedRequest) {
        let path = r.path.as_str();
        match r.method.as_str() {
            // Hood's lookup and Chatwoot's search: only planned while the id is unknown,
            // that is before the record exists, so they find nothing.
            "GET" => assert!(!self.exists, "{path}: looked up a record whose id is known"),
            _ if path == "/v1/hood/profile-properties" => {}
            method => {
                let creates = method == "POST"
                    && (path == "/v1/hood/profiles" || path.ends_with("/contacts"));
                if creates {
                    assert!(!self.exists, "{path}: created the record twice");
                } else if matches!(self.vendor, Vendor::Hood | Vendor::Chatwoot) {
                    assert!(
                        self.exists,
                        "{method} {path}: updated a record never created"
                    );
                }
                self.exists = true;
                self.merge(r.body.as_ref().expect("writes carry a body"));
            }
        }
    }

    /// Applies a body: each field given is set, nested objects field by field;
    /// Channel.io's `profileOnce` only where the record has no value yet.
    fn merge(&mut self, body: &Value) {
        for (key, value) in body.as_object().expect("bodies are objects") {
            match value {
                Value::Object(inner) => {
                    for (k, v) in inner {
                        // Omnivibe wraps the agent's fields in `profile`; the mapping names
                        // them bare.
                        let field = if self.vendor == Vendor::Omnivibe {
                            k.clone()
                        } else {
                            format!("{key}.{k}")
                        };
                        if key == "profileOnce" {
                            self.record.entry(field).or_insert_with(|| v.clone());
                        } else {
                            self.record.insert(field, v.clone());
                        }
                    }
                }
                other => {
                    self.record.insert(key.clone(), other.clone());
                }
            }
        }
    }
}

/// Delivers `changes` in `arrival` order (indices, repeats are redeliveries). A change Hood
/// refuses (no e-mail or phone to create the profile by) is dead-lettered and replayed
/// after the rest, as `relay replay` would. Returns the simulation and the order in which
/// changes were actually delivered.
fn run(vendor: Vendor, changes: &[ContactChange], arrival: &[usize]) -> (Sim, Vec<usize>) {
    run_from(Sim::new(vendor), changes, arrival)
}

fn run_from(mut sim: Sim, changes: &[ContactChange], arrival: &[usize]) -> (Sim, Vec<usize>) {
    let mut queue: VecDeque<usize> = arrival.iter().copied().collect();
    let mut delivered = Vec::new();
    let mut refusals = 0;
    while let Some(i) = queue.pop_front() {
        match sim.deliver(&changes[i]) {
            Ok(_) => delivered.push(i),
            Err(PlanError::HoodCreateNeedsEmailOrPhone) => {
                refusals += 1;
                assert!(refusals <= 100, "the Hood profile is never created");
                queue.push_back(i);
            }
            Err(other) => panic!("{other}"),
        }
    }
    (sim, delivered)
}

/// What the vendor must hold once `delivered` (indices into `changes`, in delivery order)
/// are in: per vendor field, the value of the change with the highest version that set it,
/// the greater fingerprint between equal versions; for Channel.io's `profileOnce.*`, the
/// first value delivered.
fn expected(
    vendor: Vendor,
    changes: &[ContactChange],
    delivered: &[usize],
) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (field, target) in entries(vendor) {
        let mut carrying = delivered.iter().filter_map(|&i| {
            canonical_value(&changes[i].contact, field).map(|v| (version(&changes[i]), v))
        });
        let winner = if target.starts_with("profileOnce.") {
            carrying.next()
        } else {
            carrying.max_by(|a, b| (a.0, fingerprint(&a.1)).cmp(&(b.0, fingerprint(&b.1))))
        };
        if let Some((_, value)) = winner {
            out.insert(target.clone(), value);
        }
    }
    out
}

// ------------------------------------------------------------------ the scenario --

/// The base contact of the scenarios: its key and an e-mail (Hood creates by it).
fn base() -> Contact {
    let mut c = Contact::new(key());
    c.email = Some(Email::parse("ann@example.com").unwrap());
    c
}

type Set = fn(&mut Contact, &str);

fn set_name(c: &mut Contact, v: &str) {
    c.full_name = Some(v.into());
}
fn set_organization(c: &mut Contact, v: &str) {
    c.organization = Some(v.into());
}
fn set_plan(c: &mut Contact, v: &str) {
    c.custom.insert("plan".into(), json!(v));
}
fn set_display_name(c: &mut Contact, v: &str) {
    c.custom.insert("display_name".into(), json!(v));
}
fn set_tag(c: &mut Contact, v: &str) {
    c.tags = Some(vec![v.into()]);
}

/// v1 sets "Ann" (sent), v3 sets "Ann" again (nothing to send), then v2's "Anne" arrives
/// late. v3 is the newest change that set the field: "Ann" must stay, and v2 sends nothing.
fn late_change_loses_to_a_newer_unchanged_one(mut sim: Sim, target: &str, set: Set) {
    let vendor = sim.vendor;
    let with = |event: &str, version: i64, value: &str| {
        let mut c = base();
        set(&mut c, value);
        change(event, version, c)
    };
    let (v1, v2, v3) = (
        with("e1", 60_000, "Ann"),
        with("e2", 120_000, "Anne"),
        with("e3", 180_000, "Ann"),
    );
    assert!(
        !sim.deliver(&v1).unwrap().is_empty(),
        "{vendor}: v1 is sent"
    );
    let applied_by_v1 = sim.record.get(target).cloned();
    assert!(applied_by_v1.is_some(), "{vendor}: v1 set {target}");
    assert_eq!(
        sim.deliver(&v3).unwrap(),
        [],
        "{vendor}: v3 holds only values already applied"
    );
    let late = sim.deliver(&v2).unwrap();
    assert_eq!(
        sim.record.get(target),
        applied_by_v1.as_ref(),
        "{vendor}: the late v2 overwrote {target}, set last by the newer v3"
    );
    assert_eq!(
        late,
        [],
        "{vendor}: every field of v2 is newer at the vendor"
    );
    assert_eq!(
        sim.state.applied[target].version,
        version(&v3),
        "{vendor}: the link records v3 as the change that set {target}"
    );
}

#[test]
fn hood_a_late_change_loses_to_a_newer_unchanged_one_on_create_and_patch() {
    // full_name goes in the create; company_name and plan in the PATCH after it.
    for (target, set) in [
        ("full_name", set_name as Set),
        ("custom_properties.company_name", set_organization),
        ("custom_properties.plan", set_plan),
    ] {
        late_change_loses_to_a_newer_unchanged_one(Sim::new(Vendor::Hood), target, set);
        late_change_loses_to_a_newer_unchanged_one(Sim::known(Vendor::Hood), target, set);
    }
}

#[test]
fn channelio_a_late_change_loses_to_a_newer_unchanged_one() {
    for (target, set) in [
        ("profile.name", set_name as Set),
        ("profile.companyName", set_organization),
        ("profile.plan", set_plan),
        ("tags", set_tag),
    ] {
        late_change_loses_to_a_newer_unchanged_one(Sim::new(Vendor::Channelio), target, set);
    }
}

#[test]
fn chatwoot_a_late_change_loses_to_a_newer_unchanged_one_on_create_and_update() {
    for (target, set) in [
        ("name", set_name as Set),
        ("additional_attributes.company_name", set_organization),
        ("custom_attributes.plan", set_plan),
    ] {
        late_change_loses_to_a_newer_unchanged_one(Sim::new(Vendor::Chatwoot), target, set);
        late_change_loses_to_a_newer_unchanged_one(Sim::known(Vendor::Chatwoot), target, set);
    }
}

#[test]
fn omnivibe_a_late_change_loses_to_a_newer_unchanged_one() {
    for (target, set) in [
        ("name", set_name as Set),
        ("display_name", set_display_name),
    ] {
        late_change_loses_to_a_newer_unchanged_one(Sim::new(Vendor::Omnivibe), target, set);
    }
}

#[test]
fn equal_versions_end_with_the_same_value_whatever_the_arrival_order() {
    let named = |event: &str, name: &str| {
        let mut c = base();
        c.full_name = Some(name.into());
        change(event, 60_000, c)
    };
    let changes = [named("ea", "Ann"), named("eb", "Anne")];
    let greater = [json!("Ann"), json!("Anne")]
        .into_iter()
        .max_by_key(fingerprint)
        .unwrap();
    for vendor in VENDORS {
        let (ab, _) = run(vendor, &changes, &[0, 1, 0]);
        let (ba, _) = run(vendor, &changes, &[1, 0, 1]);
        assert_eq!(
            ab.record, ba.record,
            "{vendor}: the arrival order decided a tie"
        );
        assert_eq!(ab.record[name_field(vendor)], greater, "{vendor}");
    }
}

#[test]
fn channelio_profile_once_keeps_the_first_value_channelio_received() {
    let utm = |event: &str, version: i64, value: &str| {
        let mut c = base();
        c.custom.insert("utm_source".into(), json!(value));
        change(event, version, c)
    };
    let profile_once = |requests: &[PlannedRequest]| {
        requests.first().and_then(|r| r.body.as_ref()).map(|b| {
            (
                b["profileOnce"]["utmSource"].clone(),
                b.get("profile").cloned(),
            )
        })
    };
    let mut sim = Sim::new(Vendor::Channelio);
    let first = sim.deliver(&utm("e2", 120_000, "ads")).unwrap();
    assert_eq!(
        profile_once(&first),
        Some((json!("ads"), Some(json!({"email": "ann@example.com"}))))
    );
    // Older than the value applied: not sent.
    assert_eq!(sim.deliver(&utm("e1", 60_000, "mail")).unwrap(), []);
    // Newer: still sent as profileOnce (never as profile), and Channel.io keeps "ads".
    let newer = sim.deliver(&utm("e3", 180_000, "mail")).unwrap();
    assert_eq!(profile_once(&newer), Some((json!("mail"), None)));
    assert_eq!(sim.record["profileOnce.utmSource"], json!("ads"));
}

/// The same scenario through the worker itself, with the in-memory link store: the skip of
/// v3 must commit v3's version, so v2 reaches no vendor.
#[tokio::test]
async fn the_worker_commits_the_newer_version_of_an_unchanged_field_on_a_skip() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let hood = Arc::new(FakeVendor::new(Vendor::Hood));
    let channelio = Arc::new(FakeVendor::new(Vendor::Channelio));
    let chatwoot = Arc::new(FakeVendor::new(Vendor::Chatwoot));
    let omnivibe = Arc::new(FakeVendor::new(Vendor::Omnivibe));
    let created = || {
        Ok(SyncOutcome {
            vendor_id: Some(CREATED_ID.into()),
            calls: 1,
            rate_limit: None,
        })
    };
    hood.push(created());
    channelio.push(created());
    chatwoot.push(created());
    omnivibe.push(created());
    let mut agents = relay_shared::vendors::OmnivibeAgents::default();
    agents.insert("4711", omnivibe.clone());
    let mut targets = Targets::default()
        .with::<relay_core::vendors::hood::Hood>(hood.clone())
        .with::<relay_core::vendors::channelio::Channelio>(channelio.clone())
        .with::<relay_core::vendors::chatwoot::Chatwoot>(chatwoot.clone());
    targets.insert(Vendor::Omnivibe, Arc::new(agents));
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let worker = Worker::new(
        Arc::new(Mappings::builtin().unwrap()),
        Arc::new(MemoryStore::new(clock.clone())),
        targets,
        HashMap::new(),
        queue.clone(),
        queue,
        clock,
        RetryPolicy::default(),
        Arc::new(Metrics::new(MetricsOutput::Memory)),
    );
    let named = |event: &str, version: i64, name: &str| {
        let mut c = base();
        c.full_name = Some(name.into());
        // The staff id that picks the Omnivibe agent (the built-in `custom.staff_id`).
        c.custom.insert("staff_id".into(), json!("4711"));
        change(event, version, c)
    };
    for vendor in VENDORS {
        for c in [
            named("e1", 60_000, "Ann"),
            named("e3", 180_000, "Ann"),
            named("e2", 120_000, "Anne"),
        ] {
            let message = ReceivedMessage {
                message_id: c.event.event_id.clone(),
                receipt: ReceiptHandle(c.event.event_id.clone()),
                body: DeliveryMessage::new(vendor, c).to_body(),
                receive_count: 1,
                attributes: BTreeMap::new(),
            };
            let deadline = Utc::now() + TimeDelta::seconds(60);
            assert_eq!(worker.process(&message, deadline).await, Disposition::Done);
        }
    }
    let synced = [
        (Vendor::Hood, hood.plans().len()),
        (Vendor::Channelio, channelio.plans().len()),
        (Vendor::Chatwoot, chatwoot.plans().len()),
        (Vendor::Omnivibe, omnivibe.plans().len()),
    ];
    assert_eq!(
        synced,
        VENDORS.map(|v| (v, 1)),
        "only v1 reaches each vendor: v3 changes nothing, v2 is older than v3"
    );
}

// ------------------------------------------------------------------- the property --------

const NAMES: [&str; 3] = ["Ann", "Anne", "Bob"];
const EMAILS: [&str; 2] = ["ann@example.com", "anne@example.com"];
const PHONES: [&str; 2] = ["+14155552671", "+442079460958"];
const ORGS: [&str; 2] = ["Acme", "Initech"];
const PLANS: [&str; 2] = ["free", "pro"];
const SOURCES: [&str; 2] = ["ads", "mail"];
const DISPLAY_NAMES: [&str; 2] = ["Ann", "A."];
const TAGS: [&[&str]; 3] = [&["vip"], &["vip", "beta"], &[]];
const LISTS: [&[&str]; 2] = [&["1"], &["1", "2"]];

/// One change as generated: plain values (a [`Contact`]'s Debug hides them), so a failing
/// case reads as what it is.
#[derive(Clone, Debug)]
struct Spec {
    version_ms: i64,
    name: Option<&'static str>,
    email: Option<&'static str>,
    phone: Option<&'static str>,
    organization: Option<&'static str>,
    plan: Option<&'static str>,
    utm_source: Option<&'static str>,
    display_name: Option<&'static str>,
    tags: Option<&'static [&'static str]>,
    lists: Option<&'static [&'static str]>,
}

impl Spec {
    fn change(&self, i: usize) -> ContactChange {
        let mut c = Contact::new(key());
        c.full_name = self.name.map(str::to_string);
        c.email = self.email.map(|e| Email::parse(e).unwrap());
        c.phone = self
            .phone
            .map(|p| PhoneE164::parse(p, PhoneRegion::default()).unwrap());
        c.organization = self.organization.map(str::to_string);
        c.tags = self.tags.map(|t| t.iter().map(|s| s.to_string()).collect());
        c.lists = self
            .lists
            .map(|t| t.iter().map(|s| s.to_string()).collect());
        for (name, value) in [
            ("plan", self.plan),
            ("utm_source", self.utm_source),
            ("display_name", self.display_name),
        ] {
            if let Some(v) = value {
                c.custom.insert(name.into(), json!(v));
            }
        }
        change(&format!("e{i}"), self.version_ms, c)
    }
}

fn pick<T: Clone + std::fmt::Debug + 'static>(
    pool: &'static [T],
) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(proptest::sample::select(pool))
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        // Four versions for up to seven changes: ties are common.
        0i64..4,
        (pick(&NAMES), pick(&EMAILS), pick(&PHONES), pick(&ORGS)),
        (pick(&PLANS), pick(&SOURCES), pick(&DISPLAY_NAMES)),
        (pick(&TAGS), pick(&LISTS)),
    )
        .prop_map(
            |(
                version_ms,
                (name, email, phone, organization),
                (plan, utm_source, display_name),
                (tags, lists),
            )| {
                Spec {
                    version_ms,
                    name,
                    email,
                    phone,
                    organization,
                    plan,
                    utm_source,
                    display_name,
                    tags,
                    lists,
                }
            },
        )
}

/// Up to seven changes of one contact and an arrival order: each change once, some twice
/// or more (redeliveries), shuffled. One change at least carries an e-mail or phone, so
/// Hood can create the profile.
fn history() -> impl Strategy<Value = (Vec<Spec>, Vec<usize>)> {
    proptest::collection::vec(spec(), 1..8)
        .prop_flat_map(|specs| {
            let n = specs.len();
            (Just(specs), proptest::collection::vec(0..n, 0..=n))
        })
        .prop_flat_map(|(mut specs, redelivered)| {
            if specs.iter().all(|s| s.email.is_none() && s.phone.is_none()) {
                specs[0].email = Some(EMAILS[0]);
            }
            let arrival: Vec<usize> = (0..specs.len()).chain(redelivered).collect();
            (Just(specs), Just(arrival).prop_shuffle())
        })
}

/// Once every change is in, none of them has anything left to send.
fn nothing_left_to_send(sim: &mut Sim, changes: &[ContactChange]) -> Result<(), TestCaseError> {
    for c in changes {
        prop_assert_eq!(
            sim.deliver(c).unwrap(),
            Vec::<PlannedRequest>::new(),
            "{} redelivered",
            c.event.event_id
        );
    }
    Ok(())
}

/// Delivers the history to `sim`: the vendor must end with the newest value of every field,
/// and then have nothing left to receive from any of the changes.
fn newest_value_wins(sim: Sim, specs: &[Spec], arrival: &[usize]) -> Result<(), TestCaseError> {
    let vendor = sim.vendor;
    let changes: Vec<ContactChange> = specs.iter().enumerate().map(|(i, s)| s.change(i)).collect();
    let (mut sim, delivered) = run_from(sim, &changes, arrival);
    prop_assert_eq!(&sim.record, &expected(vendor, &changes, &delivered));
    nothing_left_to_send(&mut sim, &changes)
}

/// [`history`] with where its arrivals are cut into runs: each run is pending at once and
/// coalesced into one change (as the worker does with the messages of one person in one
/// batch).
fn history_in_runs() -> impl Strategy<Value = (Vec<Spec>, Vec<usize>, Vec<bool>)> {
    history().prop_flat_map(|(specs, arrival)| {
        let n = arrival.len();
        (
            Just(specs),
            Just(arrival),
            proptest::collection::vec(any::<bool>(), n),
        )
    })
}

/// Delivers the arrivals in runs, each coalesced into one change first: the vendor must end
/// exactly as when each change is delivered alone — the newest value of every field — and
/// then have nothing left to receive from any change. (Channel.io's `profileOnce.*` keeps
/// the first value it received: that of the first coalesced change sent that carried one.)
fn coalesced_newest_value_wins(
    mut sim: Sim,
    specs: &[Spec],
    arrival: &[usize],
    cuts: &[bool],
) -> Result<(), TestCaseError> {
    let vendor = sim.vendor;
    let changes: Vec<ContactChange> = specs.iter().enumerate().map(|(i, s)| s.change(i)).collect();
    let mut runs: VecDeque<Vec<usize>> = VecDeque::new();
    for (k, &i) in arrival.iter().enumerate() {
        match runs.back_mut() {
            Some(run) if !cuts[k] => run.push(i),
            _ => runs.push_back(vec![i]),
        }
    }
    let mut delivered = Vec::new();
    let mut sent: Vec<ContactChange> = Vec::new();
    let mut refusals = 0;
    while let Some(run) = runs.pop_front() {
        let coalesced = coalesce(
            changes[run[0]].clone(),
            run[1..].iter().map(|&i| changes[i].clone()),
        );
        match sim.deliver(&coalesced) {
            Ok(_) => {
                delivered.extend(run);
                sent.push(coalesced);
            }
            Err(PlanError::HoodCreateNeedsEmailOrPhone) => {
                refusals += 1;
                assert!(refusals <= 100, "the Hood profile is never created");
                runs.push_back(run);
            }
            Err(other) => panic!("{other}"),
        }
    }
    let mut want = expected(vendor, &changes, &delivered);
    for (field, target) in entries(vendor) {
        if target.starts_with("profileOnce.") {
            match sent.iter().find_map(|c| canonical_value(&c.contact, field)) {
                Some(first) => want.insert(target.clone(), first),
                None => want.remove(target),
            };
        }
    }
    prop_assert_eq!(&sim.record, &want);
    nothing_left_to_send(&mut sim, &changes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Coalesced runs end where one-by-one delivery does, at every vendor.
    #[test]
    fn coalesced_changes_end_with_the_newest_value_of_every_field((specs, arrival, cuts) in history_in_runs()) {
        for sim in [
            Sim::new(Vendor::Hood),
            Sim::known(Vendor::Hood),
            Sim::new(Vendor::Channelio),
            Sim::new(Vendor::Chatwoot),
            Sim::known(Vendor::Chatwoot),
            Sim::new(Vendor::Omnivibe),
        ] {
            coalesced_newest_value_wins(sim, &specs, &arrival, &cuts)?;
        }
    }

    /// Hood from an unknown profile: lookup, create, PATCH after create, then PATCHes.
    #[test]
    fn hood_ends_with_the_newest_value_of_every_field((specs, arrival) in history()) {
        newest_value_wins(Sim::new(Vendor::Hood), &specs, &arrival)?;
    }

    #[test]
    fn hood_known_profile_ends_with_the_newest_value_of_every_field((specs, arrival) in history()) {
        newest_value_wins(Sim::known(Vendor::Hood), &specs, &arrival)?;
    }

    #[test]
    fn channelio_ends_with_the_newest_value_of_every_field((specs, arrival) in history()) {
        newest_value_wins(Sim::new(Vendor::Channelio), &specs, &arrival)?;
    }

    /// Chatwoot from an unknown contact: search, create, then updates.
    #[test]
    fn chatwoot_ends_with_the_newest_value_of_every_field((specs, arrival) in history()) {
        newest_value_wins(Sim::new(Vendor::Chatwoot), &specs, &arrival)?;
    }

    #[test]
    fn chatwoot_known_contact_ends_with_the_newest_value_of_every_field((specs, arrival) in history()) {
        newest_value_wins(Sim::known(Vendor::Chatwoot), &specs, &arrival)?;
    }

    #[test]
    fn omnivibe_ends_with_the_newest_value_of_every_field((specs, arrival) in history()) {
        newest_value_wins(Sim::new(Vendor::Omnivibe), &specs, &arrival)?;
    }
}

/// The worker's targets report a skip's confirmed fields (moved here from a unit test when
/// the in-memory fake vendor left the production crate).
mod targets {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use chrono::{TimeZone, Utc};
    use relay_shared::mapping::Mappings;
    use relay_shared::model::{ChangeKind, Contact, ContactChange, ContactKey, SyncEvent};
    use relay_shared::plan::{AppliedField, OmnivibePlan, SkipReason, VendorState, fingerprint};
    use relay_shared::vendors::Vendor;
    use relay_shared::worker::Targets;
    use serde_json::json;

    use crate::support::fake_vendor::FakeVendor;

    #[tokio::test]
    async fn a_skip_reports_the_fields_a_newer_change_confirms() {
        let mappings = Mappings::builtin().unwrap();
        let omnivibe = Arc::new(FakeVendor::<OmnivibePlan>::new(Vendor::Omnivibe));
        let mut agents = relay_shared::vendors::OmnivibeAgents::default();
        agents.insert("7", omnivibe.clone());
        let mut targets = Targets::default();
        targets.insert(Vendor::Omnivibe, Arc::new(agents));
        let mut contact = Contact::new(ContactKey::external("staff", "7").unwrap());
        contact.full_name = Some("Hana Kim".into());
        contact.custom.insert("staff_id".into(), json!("7"));
        let change = ContactChange {
            event: SyncEvent {
                source: "app-staff".into(),
                event_id: "e3".into(),
                occurred_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 3, 0).unwrap(),
                kind: ChangeKind::Updated,
            },
            contact,
            versions: Default::default(),
        };
        let applied_by_older = AppliedField {
            fingerprint: fingerprint(&json!("Hana Kim")),
            version: change.event.occurred_at.timestamp_millis() - 120_000,
        };
        let state = VendorState {
            vendor_id: None,
            applied: BTreeMap::from([("name".to_string(), applied_by_older.clone())]),
        };
        let delivered = targets
            .deliver(&mappings, Vendor::Omnivibe, &change, &state)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivered.skipped, Some(SkipReason::NothingChanged));
        assert_eq!(delivered.calls, 0);
        assert!(omnivibe.plans().is_empty(), "nothing reached the vendor");
        assert_eq!(
            delivered.applied,
            BTreeMap::from([(
                "name".to_string(),
                AppliedField {
                    version: change.version(),
                    ..applied_by_older
                }
            )]),
            "the skip reports the name as confirmed by this newer change"
        );
    }
}
