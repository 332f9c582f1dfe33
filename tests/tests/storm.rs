//! Issue 13's acceptance test: a storm of real-format webhooks through the local relay
//! (`relay serve`'s code, started in-process, real HTTP on 127.0.0.1) against the strict
//! sandbox vendors.
//!
//! Every built-in source (Typeform, Tally, Webflow, HubSpot batches, Pipedrive v2,
//! Standard Webhooks, and the EventBridge sources on `POST /events`) plus copies of
//! `standard`, `webflow` and `pipedrive` with their own `phone_region` send contacts from
//! DE, KR, BR, JP, US, GB and FR — phones typed in international and national formats,
//! e-mails with `+tags` and capitals, Unicode names — mixed with invalid phones and
//! e-mails on contacts that are still identifiable, tag lists holding an object (that item
//! is left out with a `tags_invalid` warning, the readable tags sync), a submission with no
//! identifier at all, HubSpot batches mixing unmapped subscription types, deletions of
//! contacts never synced, and the senders' own retries (HubSpot and Pipedrive bump their
//! attempt counters, Standard Webhooks re-signs the same `webhook-id`, form tools re-send
//! the identical body), some at the same time as the first delivery and some after it.
//!
//! Every contact's expected E.164 number is written next to the format typed, from the
//! digits chosen; nothing here calls the relay's parser.
//!
//! Asserted: each answer's status and body (`accepted`/`duplicates`, and `ignored`,
//! `warnings`, `refused` only when non-empty; a sender retry is a 2xx duplicate, never
//! `event_id_reused`), every usable event synced exactly once per vendor (worker counts),
//! nothing undelivered or dead-lettered, every identifiable contact exactly once at Hood,
//! Channel.io and Chatwoot with exactly the expected phone, e-mail, name and tags, the
//! Omnivibe agent as last sent, no sandbox rule broken and no rate limit exceeded (Hood's
//! real 10/s and 150/min: neither `LocalConfig` nor the worker lets the relay's schedule be
//! raised, so the storm is sized to them). All problems are collected and reported at once.
//!
//! HubSpot contacts: the built-in mapping takes one property per event, keys contacts by
//! `objectId` and combines a contact's events of one batch into one change, whose
//! `firstname` and `lastname` make up the full name (checked like every other source's). Each HubSpot contact here has a `contact.creation` and an
//! `email` propertyChange; their phones, from `phone`/`mobilephone` propertyChanges, are
//! checked exactly like every other source's.
//!
//! Pipedrive sends only person events here: the mapping reads `meta.action` alone, so an
//! event of another entity (a deal) would be taken for a person keyed by the deal's id.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures::StreamExt;
use futures::future::join_all;
use http::{HeaderMap, Method};
use relay_local::config::{ServerSection, SourceSection, WorkerSection};
use relay_local::demo::max_in_window;
use relay_local::{LocalConfig, LocalRelay, Storage};
use relay_sandbox::Sandbox;
use relay_shared::ingress::signature::{
    Encoding, SignRequest, SignatureScheme, TagEncoding, Verifier,
};
use relay_shared::mapping::BUILTIN_MAPPINGS;
use relay_shared::vendors::Vendor;
use relay_shared::worker::Counter;
use relay_shared::worker::setup::VendorConfigs;
use secrecy::SecretString;
use serde_json::{Value, json};

// ------------------------------------------------------------------ sources ----

/// A webhook source the storm posts to.
struct SourceDef {
    /// Its name in the mapping file (and the URL).
    name: &'static str,
    /// The built-in source it is (or copies).
    base: &'static str,
    /// `phone_region` of a copy; `None` for the built-ins (`default_phone_region`, US).
    region: Option<&'static str>,
}

const SOURCES: [SourceDef; 12] = [
    src("typeform", "typeform", None),
    src("tally", "tally", None),
    src("webflow", "webflow", None),
    src("hubspot", "hubspot", None),
    src("pipedrive", "pipedrive", None),
    src("standard", "standard", None),
    src("standard-de", "standard", Some("DE")),
    src("standard-kr", "standard", Some("KR")),
    src("webflow-br", "webflow", Some("BR")),
    src("webflow-jp", "webflow", Some("JP")),
    src("pipedrive-gb", "pipedrive", Some("GB")),
    src("pipedrive-fr", "pipedrive", Some("FR")),
];

const fn src(name: &'static str, base: &'static str, region: Option<&'static str>) -> SourceDef {
    SourceDef { name, base, region }
}

fn source_def(name: &str) -> &'static SourceDef {
    SOURCES.iter().find(|s| s.name == name).unwrap()
}

fn scheme_of(base: &str) -> SignatureScheme {
    match base {
        "typeform" => SignatureScheme::Typeform,
        "tally" => SignatureScheme::Tally,
        "webflow" => SignatureScheme::Webflow,
        "hubspot" => SignatureScheme::Hubspot,
        "pipedrive" => SignatureScheme::HttpBasic,
        _ => SignatureScheme::StandardWebhooks,
    }
}

fn route_of(base: &str) -> &'static str {
    match base {
        "typeform" | "tally" | "webflow" => "forms",
        _ => "crm",
    }
}

/// A fresh secret in the form the source's sender uses.
fn secret_for(base: &str) -> SecretString {
    let random = uuid::Uuid::new_v4();
    SecretString::from(match base {
        "standard" => format!("whsec_{}", Encoding::Base64.encode(random.as_bytes())),
        "pipedrive" => format!("pipedrive-hooks:{}", random.simple()),
        _ => random.simple().to_string(),
    })
}

/// `[sources.<from>]` and its sub-tables from the built-in file, renamed `<to>`, with
/// `phone_region` set.
fn copy_source(builtin: &str, from: &str, to: &str, region: &str) -> String {
    let head = format!("[sources.{from}]");
    let sub = format!("[sources.{from}.");
    let mut out = String::new();
    let mut inside = false;
    for line in builtin.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == head || t.starts_with(&sub);
            if inside {
                out.push('\n');
                out.push_str(&t.replacen(
                    &format!("[sources.{from}"),
                    &format!("[sources.{to}"),
                    1,
                ));
                out.push('\n');
                if t == head {
                    out.push_str(&format!("phone_region = \"{region}\"\n"));
                }
                continue;
            }
        }
        if inside && !t.is_empty() && !t.starts_with('#') {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        out.contains(&format!("[sources.{to}.fields]")),
        "the built-in mappings have no [sources.{from}] to copy"
    );
    out
}

// ------------------------------------------------------------------- people ----

/// A contact as typed into the sender, with what every vendor must end up holding.
#[derive(Debug, Clone, Copy)]
struct Person {
    name: &'static str,
    /// As typed; `None` when left empty.
    email: Option<&'static str>,
    phone: Option<&'static str>,
    /// The normalised e-mail (lower-cased), `None` where it is not a valid address.
    want_email: Option<&'static str>,
    /// The E.164 of the typed number, worked out by hand; `None` where it is invalid.
    want_phone: Option<&'static str>,
    /// Whose numbering plan the phone is in (for the report); "-" for invalid ones.
    country: &'static str,
}

const fn person(
    name: &'static str,
    email: &'static str,
    want_email: Option<&'static str>,
    phone: &'static str,
    want_phone: Option<&'static str>,
    country: &'static str,
) -> Person {
    Person {
        name,
        email: Some(email),
        phone: Some(phone),
        want_email,
        want_phone,
        country,
    }
}

impl Person {
    fn with_name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    fn with_phone(mut self, phone: &'static str, want: &'static str) -> Self {
        self.phone = Some(phone);
        self.want_phone = Some(want);
        self
    }

    fn identifiable(&self) -> bool {
        self.want_email.is_some() || self.want_phone.is_some()
    }

    /// The warnings an event carrying this person's e-mail and phone must produce.
    fn warnings(&self, event: &str) -> Vec<Warning> {
        let mut out = Vec::new();
        if self.email.is_some() && self.want_email.is_none() {
            out.push(warning(event, "email", "email_invalid"));
        }
        if self.phone.is_some() && self.want_phone.is_none() {
            out.push(warning(event, "phone", "phone_invalid"));
        }
        out
    }
}

/// `(event id, field, code)` of one warning in a 202 body.
type Warning = (String, String, String);

fn warning(event: &str, field: &str, code: &str) -> Warning {
    (event.to_string(), field.to_string(), code.to_string())
}

/// What one vendor record must hold at the end.
#[derive(Debug, Clone)]
struct Expected {
    label: String,
    email: Option<&'static str>,
    phone: Option<&'static str>,
    /// `None`: not checked (HubSpot, see the module docs).
    name: Option<&'static str>,
    tags: Vec<&'static str>,
    country: &'static str,
}

// --------------------------------------------------------------- deliveries ----

/// How the sender's retry differs from its first attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resend {
    /// The same body, signed again (Typeform, Tally, Webflow, Standard Webhooks with the
    /// same `webhook-id`, EventBridge's at-least-once redelivery).
    Identical,
    /// HubSpot: every item's `attemptNumber` is the attempt.
    HubspotAttempt,
    /// Pipedrive: `meta.attempt` is the attempt + 1.
    PipedriveAttempt,
}

/// One logical delivery (one sender event or batch) and everything expected of it.
#[derive(Debug, Clone)]
struct Delivery {
    label: String,
    /// Source name (`app-contact`, `app-staff` for EventBridge events).
    source: &'static str,
    eventbridge: bool,
    body: Value,
    /// Standard Webhooks `webhook-id`, the same on every attempt.
    webhook_id: Option<String>,
    resend: Resend,
    /// Events in the payload (batch items).
    events: usize,
    /// Events a mapping handles and that identify a contact.
    usable: usize,
    /// Events of kinds without a mapping.
    ignored: usize,
    /// Contact changes the usable events make (fewer in a HubSpot batch, which combines a
    /// contact's events); each is synced once per vendor.
    changes: usize,
    warnings: BTreeSet<Warning>,
    /// A single event with no usable identifier: the error code expected.
    refused: Option<&'static str>,
    /// Copies sent at the same time as the first.
    concurrent: usize,
    /// Copies sent after everything else.
    later: usize,
    /// Sent in the second phase (changes after the first ones).
    update: bool,
}

impl Delivery {
    /// The body of attempt `attempt` (0 = first), as the sender would send it.
    fn body_for(&self, attempt: u32) -> String {
        let mut body = self.body.clone();
        match self.resend {
            Resend::Identical => {}
            Resend::HubspotAttempt => {
                for item in body.as_array_mut().unwrap() {
                    item["attemptNumber"] = json!(attempt);
                }
            }
            Resend::PipedriveAttempt => body["meta"]["attempt"] = json!(attempt + 1),
        }
        body.to_string()
    }

    /// Vendors this delivery's events go to.
    fn vendors(&self) -> &'static [Vendor] {
        if self.source == "app-staff" {
            &[Vendor::Omnivibe]
        } else {
            &[Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot]
        }
    }
}

fn uid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn iso_ms(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A HubSpot batch being put together.
#[derive(Default)]
struct HubspotBatch {
    items: Vec<Value>,
    usable: usize,
    /// The contact changes its usable events make: one per contact (the mapping combines
    /// a contact's events of one batch), a deletion apart.
    changes: usize,
    /// Contacts with a (not deleting) change in the batch so far.
    changed: BTreeSet<u64>,
    ignored: usize,
    warnings: Vec<Warning>,
}

/// The whole storm: deliveries and the end state they must produce.
struct Storm {
    t0: DateTime<Utc>,
    next_hubspot_event: u64,
    deliveries: Vec<Delivery>,
    contacts: Vec<Expected>,
    /// The Omnivibe agent's name, display name and phone after the last staff event.
    agent: Option<(&'static str, &'static str, &'static str)>,
}

impl Storm {
    fn new() -> Self {
        Storm {
            // Events happened over the last half hour; the senders deliver (and retry) now.
            t0: Utc::now() - TimeDelta::minutes(30),
            next_hubspot_event: 4_180_000_000,
            deliveries: Vec::new(),
            contacts: Vec::new(),
            agent: None,
        }
    }

    fn at(&self, secs: i64) -> DateTime<Utc> {
        self.t0 + TimeDelta::seconds(secs)
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        label: String,
        source: &'static str,
        body: Value,
        webhook_id: Option<String>,
        resend: Resend,
        counts: (usize, usize, usize),
        warnings: Vec<Warning>,
        refused: Option<&'static str>,
    ) -> &mut Delivery {
        // A mix of retry patterns: none, one at once, one later, one at once and one later.
        let (concurrent, later) = [(0, 0), (1, 0), (0, 1), (1, 1)][self.deliveries.len() % 4];
        let (events, usable, ignored) = counts;
        self.deliveries.push(Delivery {
            label,
            source,
            eventbridge: source.starts_with("app-"),
            body,
            webhook_id,
            resend,
            events,
            usable,
            ignored,
            changes: usable,
            warnings: warnings.into_iter().collect(),
            refused,
            concurrent,
            later,
            update: false,
        });
        self.deliveries.last_mut().unwrap()
    }

    /// One signed single-event delivery of `p`: usable when `p` is identifiable.
    fn single(
        &mut self,
        source: &'static str,
        event_id: &str,
        p: Person,
        body: Value,
        webhook_id: Option<String>,
        resend: Resend,
    ) -> &mut Delivery {
        let usable = usize::from(p.identifiable());
        let refused = (!p.identifiable()).then_some("contact_unidentifiable");
        self.push(
            format!("{source} {} ({event_id})", p.name),
            source,
            body,
            webhook_id,
            resend,
            (1, usable, 0),
            if usable == 1 {
                p.warnings(event_id)
            } else {
                Vec::new()
            },
            refused,
        )
    }

    fn expect(&mut self, source: &str, p: Person, tags: &[&'static str]) {
        self.contacts.push(Expected {
            label: format!("{source} {}", p.name),
            email: p.want_email,
            phone: p.want_phone,
            name: Some(p.name),
            tags: tags.to_vec(),
            country: p.country,
        });
    }

    // ---- Typeform `form_response` (the phone_number widget sends E.164) ----

    fn typeform(&mut self, p: Person, company: &str, interests: &[&str], at: i64) -> &mut Delivery {
        let submitted = self.at(at);
        let event_id = uid()[..26].to_uppercase();
        let mut answers = vec![json!({
            "type": "text", "text": p.name,
            "field": { "id": "JwWggjAKtOkA", "type": "short_text", "ref": "full_name" }
        })];
        if let Some(email) = p.email {
            answers.push(json!({
                "type": "email", "email": email,
                "field": { "id": "SMEUb7VJz92Q", "type": "email", "ref": "email" }
            }));
        }
        if let Some(phone) = p.phone {
            answers.push(json!({
                "type": "phone_number", "phone_number": phone,
                "field": { "id": "pn48RmPazVdM", "type": "phone_number", "ref": "phone" }
            }));
        }
        answers.push(json!({
            "type": "text", "text": company,
            "field": { "id": "k6TP9oLGgHjl", "type": "short_text", "ref": "company" }
        }));
        let choices: Vec<&str> = interests.to_vec();
        let ids: Vec<&str> = interests
            .iter()
            .map(|c| {
                if *c == "Product news" {
                    "eXnU3oA141Cg"
                } else {
                    "aTZmZGYV6liX"
                }
            })
            .collect();
        answers.push(json!({
            "type": "choices", "choices": { "ids": ids, "labels": choices },
            "field": { "id": "X4BGU3MQfVr2", "type": "multiple_choice", "ref": "interests" }
        }));
        answers.push(json!({
            "type": "boolean", "boolean": true,
            "field": { "id": "gFFf3xAkJKsr", "type": "yes_no", "ref": "marketing_consent" }
        }));
        let body = json!({
            "event_id": event_id,
            "event_type": "form_response",
            "form_response": {
                "form_id": "lT4Z3j",
                "token": uid(),
                "landed_at": iso(submitted - TimeDelta::seconds(95)),
                "submitted_at": iso(submitted),
                "hidden": { "utm_source": "newsletter" },
                "calculated": { "score": 0 },
                "variables": [{ "key": "score", "type": "number", "number": 0 }],
                "definition": {
                    "id": "lT4Z3j",
                    "title": "Join the beta",
                    "fields": [
                        { "id": "JwWggjAKtOkA", "ref": "full_name", "type": "short_text", "title": "What's your name?", "properties": {} },
                        { "id": "SMEUb7VJz92Q", "ref": "email", "type": "email", "title": "Your e-mail?", "properties": {} },
                        { "id": "pn48RmPazVdM", "ref": "phone", "type": "phone_number", "title": "Your phone?", "properties": {} },
                        { "id": "k6TP9oLGgHjl", "ref": "company", "type": "short_text", "title": "Company?", "properties": {} },
                        { "id": "X4BGU3MQfVr2", "ref": "interests", "type": "multiple_choice", "title": "What interests you?", "allow_multiple_selections": true, "properties": {},
                          "choices": [{ "id": "eXnU3oA141Cg", "label": "Product news" }, { "id": "aTZmZGYV6liX", "label": "Beta program" }] },
                        { "id": "gFFf3xAkJKsr", "ref": "marketing_consent", "type": "yes_no", "title": "May we e-mail you?", "properties": {} }
                    ]
                },
                "answers": answers,
                "ending": { "id": "DefaultTyScreen", "ref": "default_tys" }
            }
        });
        self.single("typeform", &event_id, p, body, None, Resend::Identical)
    }

    // ---- Tally `FORM_RESPONSE` (the phone input sends E.164; unanswered fields are null) ----

    fn tally(&mut self, p: Person, company: &str, at: i64) -> &mut Delivery {
        let created = iso_ms(self.at(at));
        let event_id = uuid::Uuid::new_v4().to_string();
        let response = &uid()[..6];
        let body = json!({
            "eventId": event_id,
            "eventType": "FORM_RESPONSE",
            "createdAt": created,
            "data": {
                "responseId": response,
                "submissionId": response,
                "respondentId": &uid()[..6],
                "formId": "VwbNEw",
                "formName": "Waitlist",
                "createdAt": created,
                "fields": [
                    { "key": "question_3EKz4n", "label": "Name", "type": "INPUT_TEXT", "value": p.name },
                    { "key": "question_w4Q4Xn", "label": "Email", "type": "INPUT_EMAIL", "value": p.email },
                    { "key": "question_3jZaa6", "label": "Phone", "type": "INPUT_PHONE_NUMBER", "value": p.phone },
                    { "key": "question_mRoZYn", "label": "Company", "type": "INPUT_TEXT", "value": company },
                    { "key": "question_consent", "label": "Marketing e-mails", "type": "CHECKBOXES", "value": ["4e5f"], "options": [{ "id": "4e5f", "text": "Yes, send me product news" }] },
                    { "key": "question_consent_4e5f", "label": "Marketing e-mails (Yes, send me product news)", "type": "CHECKBOXES", "value": true },
                    { "key": "question_utm", "label": "utm_source", "type": "HIDDEN_FIELDS", "value": "twitter" }
                ]
            }
        });
        self.single("tally", &event_id, p, body, None, Resend::Identical)
    }

    // ---- Webflow `form_submission` (free-text phone field; empty fields are "") ----

    fn webflow(
        &mut self,
        source: &'static str,
        p: Person,
        company: &str,
        at: i64,
    ) -> &mut Delivery {
        let id = uid()[..24].to_string();
        let body = json!({
            "triggerType": "form_submission",
            "payload": {
                "name": "Contact Sales",
                "siteId": "65427cf400e02b306eaa049c",
                "data": {
                    "Name": p.name,
                    "Email": p.email.unwrap_or(""),
                    "Phone": p.phone.unwrap_or(""),
                    "Company": company,
                    "Newsletter": "true"
                },
                "schema": [
                    { "fieldName": "Name", "fieldType": "FormTextInput", "fieldElementId": "6f0a6d3a-1a2b-4c3d-8e9f-0a1b2c3d4e5f" },
                    { "fieldName": "Email", "fieldType": "FormEmail", "fieldElementId": "7a1b7e4b-2b3c-4d4e-9f0a-1b2c3d4e5f60" },
                    { "fieldName": "Phone", "fieldType": "FormPhone", "fieldElementId": "8b2c8f5c-3c4d-4e5f-a01b-2c3d4e5f6071" },
                    { "fieldName": "Company", "fieldType": "FormTextInput", "fieldElementId": "9c3d906d-4d5e-4f60-b12c-3d4e5f607182" },
                    { "fieldName": "Newsletter", "fieldType": "FormCheckboxInput", "fieldElementId": "ad4ea17e-5e6f-4071-c23d-4e5f60718293" }
                ],
                "submittedAt": iso_ms(self.at(at)),
                "id": id,
                "formId": "65429eadebe8a9f3a30f62d0",
                "formElementId": "4e038d2c-6a1e-4953-7be9-a59a2b453177",
                "pageId": "65427cf400e02b306eaa04a0",
                "publishedPath": "/contact",
                "pageUrl": "https://www.example.com/contact"
            }
        });
        self.single(source, &id, p, body, None, Resend::Identical)
    }

    // ---- HubSpot webhooks v3 (batches of every subscription type) ----

    fn hubspot_item(
        &mut self,
        subscription: &str,
        object_id: u64,
        property: Option<(&str, &str)>,
        at_ms: i64,
    ) -> (String, Value) {
        self.next_hubspot_event += 1;
        let event_id = self.next_hubspot_event;
        let subscription_id = match subscription {
            "contact.creation" => 2_200_412,
            "contact.propertyChange" => 2_200_413,
            "contact.deletion" => 2_200_414,
            "deal.creation" => 2_200_420,
            "deal.propertyChange" => 2_200_421,
            "company.creation" => 2_200_430,
            _ => 2_200_431,
        };
        let mut item = json!({
            "eventId": event_id,
            "subscriptionId": subscription_id,
            "portalId": 62515,
            "appId": 1160452,
            "occurredAt": self.t0.timestamp_millis() + at_ms,
            "subscriptionType": subscription,
            "attemptNumber": 0,
            "objectId": object_id,
            "changeSource": "CRM_UI",
            "sourceId": "userId:100"
        });
        match property {
            Some((name, value)) => {
                item["propertyName"] = json!(name);
                item["propertyValue"] = json!(value);
            }
            None => {
                item["changeFlag"] = json!(if subscription.ends_with("deletion") {
                    "DELETED"
                } else {
                    "CREATED"
                });
            }
        }
        (event_id.to_string(), item)
    }

    /// A contact's events as HubSpot sends them when it is created in the CRM: the
    /// creation, then one propertyChange per property set.
    fn hubspot_contact(
        &mut self,
        batch: &mut HubspotBatch,
        object_id: u64,
        p: Person,
        phone_property: &str,
        at: i64,
    ) {
        let ms = at * 1000;
        let (first, last) = p.name.split_once(' ').unwrap_or((p.name, ""));
        let mut events = vec![self.hubspot_item("contact.creation", object_id, None, ms)];
        for (i, (name, value)) in [
            ("email", p.email.unwrap()),
            ("firstname", first),
            ("lastname", last),
            (phone_property, p.phone.unwrap()),
        ]
        .into_iter()
        .enumerate()
        {
            let offset = ms + 400 * (i64::try_from(i).unwrap() + 1);
            let (id, item) = self.hubspot_item(
                "contact.propertyChange",
                object_id,
                Some((name, value)),
                offset,
            );
            if name == phone_property && p.want_phone.is_none() {
                batch.warnings.push(warning(&id, "phone", "phone_invalid"));
            }
            events.push((id, item));
        }
        batch.usable += events.len();
        if batch.changed.insert(object_id) {
            batch.changes += 1;
        }
        batch.items.extend(events.into_iter().map(|(_, item)| item));
        self.contacts.push(Expected {
            label: format!("hubspot {object_id}"),
            email: p.want_email,
            phone: p.want_phone,
            // The first and last name arrive in one batch: they make up the full name.
            name: (!last.trim().is_empty()).then_some(p.name),
            tags: Vec::new(),
            country: p.country,
        });
    }

    fn hubspot_contact_event(&mut self, batch: &mut HubspotBatch, item: (String, Value)) {
        batch.usable += 1;
        let object = item.1["objectId"].as_u64().unwrap();
        if item.1["subscriptionType"] == "contact.deletion" {
            batch.changed.remove(&object);
            batch.changes += 1;
        } else if batch.changed.insert(object) {
            batch.changes += 1;
        }
        batch.items.push(item.1);
    }

    /// An event of a subscription type the mapping has no kind for.
    fn hubspot_other(&mut self, batch: &mut HubspotBatch, item: (String, Value)) {
        batch.ignored += 1;
        batch.items.push(item.1);
    }

    fn hubspot_send(&mut self, label: &str, batch: HubspotBatch) -> &mut Delivery {
        let events = batch.items.len();
        let changes = batch.changes;
        let d = self.push(
            format!("hubspot batch {label}"),
            "hubspot",
            Value::Array(batch.items),
            None,
            Resend::HubspotAttempt,
            (events, batch.usable, batch.ignored),
            batch.warnings,
            None,
        );
        d.changes = changes;
        d
    }

    // ---- Pipedrive webhooks v2 (person entity; free-text phones) ----

    #[allow(clippy::too_many_arguments)]
    fn pipedrive(
        &mut self,
        source: &'static str,
        company_id: &str,
        action: &str,
        person_id: u64,
        p: Option<Person>,
        previous: Value,
        at: i64,
    ) -> &mut Delivery {
        let when = self.at(at);
        let data = p.map(|p| {
            let (first, last) = p.name.split_once(' ').unwrap_or((p.name, ""));
            json!({
                "id": person_id,
                "name": p.name,
                "first_name": first,
                "last_name": last,
                "emails": [{ "label": "work", "value": p.email, "primary": true }],
                "phones": [{ "label": "mobile", "value": p.phone, "primary": true }],
                "org_id": null,
                "owner_id": 11,
                "label_ids": [],
                "visible_to": "3",
                "add_time": iso(self.t0),
                "update_time": iso(when),
                "custom_fields": {}
            })
        });
        let meta_id = uuid::Uuid::new_v4().to_string();
        let mut body = json!({
            "data": data,
            "meta": {
                "action": action,
                "entity": "person",
                "entity_id": person_id.to_string(),
                "id": meta_id,
                "timestamp": iso_ms(when),
                "type": "general",
                "version": "2.0",
                "company_id": company_id,
                "correlation_id": uuid::Uuid::new_v4().to_string(),
                "host": format!("{company_id}.pipedrive.com"),
                "is_bulk_edit": false,
                "attempt": 1,
                "user_id": "11",
                "webhook_id": "222",
                "webhook_owner_id": "11",
                "change_source": "app",
                "permitted_user_ids": ["11"]
            }
        });
        body["previous"] = previous;
        let event_id = format!("{meta_id}:2.0");
        let label = format!(
            "{source} {action} person {person_id}{}",
            p.map(|p| format!(" {}", p.name)).unwrap_or_default()
        );
        let warnings = p.map(|p| p.warnings(&event_id)).unwrap_or_default();
        self.push(
            label,
            source,
            body,
            None,
            Resend::PipedriveAttempt,
            (1, 1, 0),
            warnings,
            None,
        )
    }

    // ---- Standard Webhooks contact envelope ----

    #[allow(clippy::too_many_arguments)]
    fn standard(
        &mut self,
        source: &'static str,
        kind: &str,
        user_id: &str,
        p: Person,
        tags: Value,
        plan: &str,
        at: i64,
    ) -> &mut Delivery {
        let webhook_id = format!("msg_{}", &uid()[..27]);
        let mut body = json!({
            "type": kind,
            "timestamp": iso(self.at(at)),
            "data": {
                "id": user_id,
                "email": p.email,
                "phone": p.phone,
                "name": p.name,
                "tags": null,
                "consent": { "email": true, "sms": false },
                "properties": { "plan": plan, "utm_source": "partner" }
            }
        });
        body["data"]["tags"] = tags;
        let id = webhook_id.clone();
        let d = self.single(source, &id, p, body, Some(webhook_id), Resend::Identical);
        d.label = format!("{source} {kind} {user_id} {}", p.name);
        d
    }

    // ---- EventBridge (POST /events) ----

    fn eventbridge(&mut self, detail_type: &str, detail: Value, at: i64) -> (String, Value) {
        let id = uuid::Uuid::new_v4().to_string();
        let mut event = json!({
            "version": "0",
            "id": id,
            "detail-type": detail_type,
            "source": "com.example.app",
            "account": "123456789012",
            "time": iso(self.at(at)),
            "region": "eu-west-1",
            "resources": [],
            "detail": null
        });
        event["detail"] = detail;
        (id, event)
    }

    fn app_contact(
        &mut self,
        user_id: &str,
        p: Person,
        tags: Value,
        plan: &str,
        at: i64,
    ) -> &mut Delivery {
        let mut detail = json!({
            "userId": user_id,
            "email": p.email,
            "phone": p.phone,
            "name": p.name,
            "company": "Koch & Kim GmbH",
            "plan": plan,
            "tags": null,
            "marketingEmails": true,
            "sms": false
        });
        detail["tags"] = tags;
        let (id, event) = self.eventbridge("ContactUpserted", detail, at);
        let d = self.single("app-contact", &id, p, event, None, Resend::Identical);
        d.label = format!("app-contact {user_id} {}", p.name);
        d
    }

    fn app_staff(
        &mut self,
        name: &'static str,
        display: &'static str,
        phone: &'static str,
        want_phone: &'static str,
        at: i64,
    ) -> &mut Delivery {
        let (id, event) = self.eventbridge(
            "StaffProfileUpdated",
            json!({
                "staffId": "s_7",
                "name": name,
                "displayName": display,
                "email": "hana.kim@example.com",
                "phone": phone,
                "signature": format!("{name} · Support")
            }),
            at,
        );
        self.agent = Some((name, display, want_phone));
        self.push(
            format!("app-staff {display} ({id})"),
            "app-staff",
            event,
            None,
            Resend::Identical,
            (1, 1, 0),
            Vec::new(),
            None,
        )
    }
}

/// The storm's traffic. Phones: the format typed, then the E.164 worked out from its digits.
fn build_storm() -> Storm {
    let mut s = Storm::new();

    // Typeform (built-in, US region): the widget sends E.164.
    let zoe = person(
        "Zoë Åström",
        "Zoe.Astrom+Beta@Example.COM",
        Some("zoe.astrom+beta@example.com"),
        "+4915201234567",
        Some("+4915201234567"),
        "DE",
    );
    let minjun = person(
        "김민준",
        "MinJun.Kim@Example.co.kr",
        Some("minjun.kim@example.co.kr"),
        "+821011112222",
        Some("+821011112222"),
        "KR",
    );
    let joao = person(
        "São João Batista",
        "Joao.Batista+Promo@Exemplo.com.br",
        Some("joao.batista+promo@exemplo.com.br"),
        "+5511955554444",
        Some("+5511955554444"),
        "BR",
    );
    let taro = person(
        "山田 太郎",
        "Taro.Yamada@Example.jp",
        Some("taro.yamada@example.jp"),
        "+818012345678",
        Some("+818012345678"),
        "JP",
    );
    s.typeform(
        zoe,
        "Åström Design AB",
        &["Product news", "Beta program"],
        10,
    );
    s.expect("typeform", zoe, &["Product_news", "Beta_program"]);
    s.typeform(minjun, "Kim & Partners", &["Product news"], 20);
    s.typeform(joao, "Padaria São João", &["Beta program"], 30);
    s.expect("typeform", joao, &["Beta_program"]);
    s.typeform(taro, "山田商店", &["Product news", "Beta program"], 40);
    s.expect("typeform", taro, &["Product_news", "Beta_program"]);
    // 김민준 submits the form again later with a new number: the newer answer wins.
    let minjun_later = minjun.with_phone("+821098761234", "+821098761234");
    s.typeform(minjun_later, "Kim & Partners", &["Beta program"], 1300)
        .update = true;
    s.expect("typeform", minjun_later, &["Beta_program"]);

    // Tally (built-in, US region): the phone input sends E.164; unanswered fields are null.
    let oliver = person(
        "Oliver Wright",
        "Oliver.Wright@Example.co.uk",
        Some("oliver.wright@example.co.uk"),
        "+447812345678",
        Some("+447812345678"),
        "GB",
    );
    let elodie = person(
        "Élodie Martin",
        "Elodie.Martin+Tally@Exemple.fr",
        Some("elodie.martin+tally@exemple.fr"),
        "+33756123456",
        Some("+33756123456"),
        "FR",
    );
    let juergen = person(
        "Jürgen Weiß",
        "Juergen.Weiss@Beispiel.de",
        Some("juergen.weiss@beispiel.de"),
        "+4917612345678",
        Some("+4917612345678"),
        "DE",
    );
    let nobody = Person {
        name: "Kai",
        email: None,
        phone: None,
        want_email: None,
        want_phone: None,
        country: "-",
    };
    for (p, company, at) in [
        (oliver, "Wright Ltd", 50),
        (elodie, "Martin SARL", 60),
        (juergen, "Weiß GmbH", 70),
        (nobody, "", 80),
    ] {
        s.tally(p, company, at);
        if p.identifiable() {
            s.expect("tally", p, &[]);
        }
    }

    // Webflow (built-in, US region): a free-text phone field.
    let ethan = person(
        "Ethan Brooks",
        "Ethan.Brooks@Example.com",
        Some("ethan.brooks@example.com"),
        "(312) 555-0163",
        Some("+13125550163"),
        "US",
    );
    let seoyeon = person(
        "최서연",
        "SeoYeon.Choi@Example.kr",
        Some("seoyeon.choi@example.kr"),
        "+82 10-1234-5678",
        Some("+821012345678"),
        "KR",
    );
    let lucas = person(
        "Lucas Almeida",
        "Lucas.Almeida@Example.com.br",
        Some("lucas.almeida@example.com.br"),
        "+55 (11) 98765-4321",
        Some("+5511987654321"),
        "BR",
    );
    let amelia = person(
        "Amelia Clarke",
        "Amelia.Clarke+Events@Example.co.uk",
        Some("amelia.clarke+events@example.co.uk"),
        "not a phone",
        None,
        "-",
    );
    // The browser's e-mail input accepts an address without a TLD; the phone identifies her.
    let mia = person(
        "Mia Schmidt",
        "mia.schmidt@gmail",
        None,
        "+49 151 1234 5678",
        Some("+4915112345678"),
        "DE",
    );
    for (p, at) in [
        (ethan, 90),
        (seoyeon, 100),
        (lucas, 110),
        (amelia, 120),
        (mia, 130),
    ] {
        s.webflow("webflow", p, "Example Co", at);
        s.expect("webflow", p, &[]);
    }

    // HubSpot (built-in): batches mixing contact events with deals and companies.
    let lena = person(
        "Lena Fischer",
        "Lena.Fischer+CRM@Example.de",
        Some("lena.fischer+crm@example.de"),
        "+49 160 98765432",
        Some("+4916098765432"),
        "DE",
    );
    let jiwoo = person(
        "박지우",
        "JiWoo.Park@Example.kr",
        Some("jiwoo.park@example.kr"),
        "+82 10 2345 6789",
        Some("+821023456789"),
        "KR",
    );
    let ana = person(
        "Ana Souza",
        "Ana.Souza@Example.com.br",
        Some("ana.souza@example.com.br"),
        "+55 11 99876-5432",
        Some("+5511998765432"),
        "BR",
    );
    let jack = person(
        "Jack Taylor",
        "Jack.Taylor@Example.com",
        Some("jack.taylor@example.com"),
        "+49 123",
        None,
        "-",
    );
    let mut b1 = HubspotBatch::default();
    s.hubspot_contact(&mut b1, 1201, lena, "phone", 140);
    let deal = s.hubspot_item("deal.creation", 7001, None, 141_000);
    s.hubspot_other(&mut b1, deal);
    s.hubspot_contact(&mut b1, 1202, jiwoo, "mobilephone", 142);
    let company = s.hubspot_item(
        "company.propertyChange",
        8001,
        Some(("domain", "fischer-partner.de")),
        143_000,
    );
    s.hubspot_other(&mut b1, company);
    let d = s.hubspot_send("1", b1);
    (d.concurrent, d.later) = (1, 1);

    let mut b2 = HubspotBatch::default();
    s.hubspot_contact(&mut b2, 1203, ana, "phone", 150);
    let stage = s.hubspot_item(
        "deal.propertyChange",
        7001,
        Some(("dealstage", "contractsent")),
        151_000,
    );
    s.hubspot_other(&mut b2, stage);
    s.hubspot_contact(&mut b2, 1204, jack, "phone", 152);
    // A contact deleted in HubSpot that was never synced.
    let gone = s.hubspot_item("contact.deletion", 1299, None, 153_000);
    s.hubspot_contact_event(&mut b2, gone);
    let d = s.hubspot_send("2", b2);
    (d.concurrent, d.later) = (0, 2);

    // Later: Ana's number is edited, Lena's first name too; a company is created.
    let mut b3 = HubspotBatch::default();
    let edit = s.hubspot_item(
        "contact.propertyChange",
        1203,
        Some(("phone", "+55 11 91111-2222")),
        1_310_000,
    );
    s.hubspot_contact_event(&mut b3, edit);
    let first = s.hubspot_item(
        "contact.propertyChange",
        1201,
        Some(("firstname", "Léna")),
        1_311_000,
    );
    s.hubspot_contact_event(&mut b3, first);
    let created = s.hubspot_item("company.creation", 8002, None, 1_312_000);
    s.hubspot_other(&mut b3, created);
    let d = s.hubspot_send("3", b3);
    (d.concurrent, d.later, d.update) = (1, 0, true);
    for c in &mut s.contacts {
        if c.label == "hubspot 1203" {
            c.phone = Some("+5511911112222");
        }
        if c.label == "hubspot 1201" {
            // A first name alone does not make a full name (the last name is not in the
            // batch), so the vendors keep the old one: not checked until HubSpot
            // enrichment completes such a change (issue 14).
            c.name = None;
        }
    }

    // Pipedrive (built-in, US region): phones typed into the CRM.
    let hans = person(
        "Hans Müller",
        "Hans.Mueller@Example.DE",
        Some("hans.mueller@example.de"),
        "+49 171 2345678",
        Some("+491712345678"),
        "DE",
    );
    let ken = person(
        "佐藤 健",
        "Ken.Sato@Example.jp",
        Some("ken.sato@example.jp"),
        "+81 90-1234-5678",
        Some("+819012345678"),
        "JP",
    );
    let camille = person(
        "Camille Dubois",
        "Camille.Dubois@Exemple.FR",
        Some("camille.dubois@exemple.fr"),
        "+33 6 12 34 56 78",
        Some("+33612345678"),
        "FR",
    );
    let liam = person(
        "Liam Walsh",
        "Liam.Walsh@Example.ie",
        Some("liam.walsh@example.ie"),
        "12345",
        None,
        "-",
    );
    for (id, p, at) in [
        (3101, hans, 160),
        (3102, ken, 170),
        (3103, camille, 180),
        (3104, liam, 190),
    ] {
        s.pipedrive("pipedrive", "acme", "create", id, Some(p), Value::Null, at);
    }
    let hans_peter = hans.with_name("Hans-Peter Müller");
    s.pipedrive(
        "pipedrive",
        "acme",
        "change",
        3101,
        Some(hans_peter),
        json!({ "name": "Hans Müller" }),
        1320,
    )
    .update = true;
    for p in [hans_peter, ken, camille, liam] {
        s.expect("pipedrive", p, &[]);
    }
    // A person deleted in Pipedrive that was never synced: `data` is null, `previous` holds it.
    s.pipedrive(
        "pipedrive",
        "acme",
        "delete",
        3199,
        None,
        json!({ "id": 3199, "name": "Old Lead" }),
        200,
    );

    // Standard Webhooks (built-in, US region): the app's own data.
    let emily = person(
        "Emily Carter",
        "Emily.Carter+Trial@Example.com",
        Some("emily.carter+trial@example.com"),
        "+44 7400 123456",
        Some("+447400123456"),
        "GB",
    );
    let james = person(
        "James Wilson",
        "James.Wilson@Example.com",
        Some("james.wilson@example.com"),
        "+12025550178",
        Some("+12025550178"),
        "US",
    );
    let chloe = person(
        "Chloé Bernard",
        "Chloe.Bernard@Exemple.fr",
        Some("chloe.bernard@exemple.fr"),
        "+33 6 55 44 33 22",
        Some("+33655443322"),
        "FR",
    );
    s.standard(
        "standard",
        "contact.created",
        "usr_9001",
        emily,
        json!(["trial", "eu.west", "Trial", "new lead"]),
        "pro",
        210,
    );
    s.expect("standard", emily, &["trial", "eu_west", "new_lead"]);
    s.standard(
        "standard",
        "contact.created",
        "usr_9002",
        james,
        json!(["customer"]),
        "team",
        220,
    );
    s.expect("standard", james, &["customer"]);
    // A tag given as an object does not normalise: it is left out with a `tags_invalid`
    // warning, the readable tags and the rest of the contact sync.
    let d = s.standard(
        "standard",
        "contact.created",
        "usr_9003",
        chloe,
        json!(["vip", { "id": "tag_8f2", "label": "Key account" }]),
        "pro",
        230,
    );
    let id = d.webhook_id.clone().unwrap();
    d.warnings.insert(warning(&id, "tags", "tags_invalid"));
    s.expect("standard", chloe, &["vip"]);

    // National formats, read in each source's phone_region.
    let lukas = person(
        "Lukas Becker",
        "Lukas.Becker@Beispiel.de",
        Some("lukas.becker@beispiel.de"),
        "0151 23456789",
        Some("+4915123456789"),
        "DE",
    );
    let anna = person(
        "Anna Schäfer",
        "Anna.Schaefer+Shop@Beispiel.de",
        Some("anna.schaefer+shop@beispiel.de"),
        "0176 98765432",
        Some("+4917698765432"),
        "DE",
    );
    let max = person(
        "Max Hoffmann",
        "Max.Hoffmann@Beispiel.de",
        Some("max.hoffmann@beispiel.de"),
        "0049 157 23456789",
        Some("+4915723456789"),
        "DE",
    );
    s.standard(
        "standard-de",
        "contact.created",
        "usr_de_101",
        lukas,
        json!(["kunde"]),
        "pro",
        240,
    );
    s.standard(
        "standard-de",
        "contact.created",
        "usr_de_102",
        anna,
        json!(["kunde"]),
        "team",
        250,
    );
    s.standard(
        "standard-de",
        "contact.created",
        "usr_de_103",
        max,
        json!(["kunde"]),
        "team",
        260,
    );
    // Lukas's record changes later: a new name, the same number written internationally.
    let lukas_later = lukas
        .with_name("Lukas M. Becker")
        .with_phone("+49 151 23456789", "+4915123456789");
    s.standard(
        "standard-de",
        "contact.updated",
        "usr_de_101",
        lukas_later,
        json!(["kunde"]),
        "pro",
        1330,
    )
    .update = true;
    for p in [lukas_later, anna, max] {
        s.expect("standard-de", p, &["kunde"]);
    }
    let jihoon = person(
        "박지훈",
        "JiHoon.Park@Example.kr",
        Some("jihoon.park@example.kr"),
        "010-4567-8901",
        Some("+821045678901"),
        "KR",
    );
    let yuna = person(
        "정유나",
        "YuNa.Jung@Example.kr",
        Some("yuna.jung@example.kr"),
        "010 5678 9012",
        Some("+821056789012"),
        "KR",
    );
    s.standard(
        "standard-kr",
        "contact.created",
        "usr_kr_201",
        jihoon,
        json!(["고객"]),
        "pro",
        270,
    );
    s.standard(
        "standard-kr",
        "contact.created",
        "usr_kr_202",
        yuna,
        json!(["고객"]),
        "team",
        280,
    );
    s.expect("standard-kr", jihoon, &["고객"]);
    s.expect("standard-kr", yuna, &["고객"]);
    let beatriz = person(
        "Beatriz Costa",
        "Beatriz.Costa@Exemplo.com.br",
        Some("beatriz.costa@exemplo.com.br"),
        "(11) 97654-3210",
        Some("+5511976543210"),
        "BR",
    );
    let gabriel = person(
        "Gabriel Santos",
        "Gabriel.Santos+Site@Exemplo.com.br",
        Some("gabriel.santos+site@exemplo.com.br"),
        "11 94321-8765",
        Some("+5511943218765"),
        "BR",
    );
    let hanako = person(
        "佐藤 花子",
        "Hanako.Sato@Example.jp",
        Some("hanako.sato@example.jp"),
        "090-2345-6789",
        Some("+819023456789"),
        "JP",
    );
    for (source, p, at) in [
        ("webflow-br", beatriz, 290),
        ("webflow-br", gabriel, 300),
        ("webflow-jp", hanako, 310),
    ] {
        s.webflow(source, p, "Loja Exemplo", at);
        s.expect(source, p, &[]);
    }
    let harry = person(
        "Harry Evans",
        "Harry.Evans@Example.co.uk",
        Some("harry.evans@example.co.uk"),
        "07400 234567",
        Some("+447400234567"),
        "GB",
    );
    let lea = person(
        "Léa Moreau",
        "Lea.Moreau@Exemple.fr",
        Some("lea.moreau@exemple.fr"),
        "06 23 45 67 89",
        Some("+33623456789"),
        "FR",
    );
    s.pipedrive(
        "pipedrive-gb",
        "evans-uk",
        "create",
        4101,
        Some(harry),
        Value::Null,
        320,
    );
    s.expect("pipedrive-gb", harry, &[]);
    s.pipedrive(
        "pipedrive-fr",
        "moreau-fr",
        "create",
        5101,
        Some(lea),
        Value::Null,
        330,
    );
    s.expect("pipedrive-fr", lea, &[]);

    // EventBridge: the app's own contacts and a staff member (the Omnivibe agent).
    let sebastian = person(
        "Sebastian Koch",
        "Sebastian.Koch@Beispiel.de",
        Some("sebastian.koch@beispiel.de"),
        "+49 40 3012 3456",
        Some("+494030123456"),
        "DE",
    );
    let doyoon = person(
        "김도윤",
        "DoYoon.Kim@Example.kr",
        Some("doyoon.kim@example.kr"),
        "+82 10 6789 0123",
        Some("+821067890123"),
        "KR",
    );
    s.app_contact(
        "u_2001",
        sebastian,
        json!(["customer", "Newsletter Q3"]),
        "team",
        340,
    );
    s.app_contact(
        "u_2001",
        sebastian,
        json!(["customer", "Newsletter Q3"]),
        "business",
        1340,
    )
    .update = true;
    s.expect("app-contact", sebastian, &["customer", "Newsletter_Q3"]);
    let d = s.app_contact(
        "u_2002",
        doyoon,
        json!(["early-adopter", { "id": 12, "name": "Beta" }]),
        "team",
        350,
    );
    let id = d.body["id"].as_str().unwrap().to_string();
    d.warnings.insert(warning(&id, "tags", "tags_invalid"));
    s.expect("app-contact", doyoon, &["early-adopter"]);
    s.app_staff("김하나", "Hana", "+82 10-8765-4321", "+821087654321", 360);
    s.app_staff(
        "김하나",
        "Hana K.",
        "+82 10-8765-4321",
        "+821087654321",
        1350,
    )
    .update = true;
    s
}

// ------------------------------------------------------------------- sending ----

/// One HTTP answer.
#[derive(Debug, Clone)]
struct Answer {
    attempt: u32,
    status: u16,
    body: Value,
    retry_after: Option<u64>,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }
}

struct Sender {
    client: reqwest::Client,
    base: String,
    verifiers: BTreeMap<&'static str, Verifier>,
}

impl Sender {
    /// Posts attempt `attempt` of `d`, signed now.
    async fn post(&self, d: &Delivery, attempt: u32) -> Answer {
        let body = d.body_for(attempt);
        let (url, headers) = if d.eventbridge {
            (format!("{}/events", self.base), HeaderMap::new())
        } else {
            let def = source_def(d.source);
            let url = format!("{}/hooks/{}/{}", self.base, route_of(def.base), def.name);
            let headers = self.verifiers[d.source]
                .sign(&SignRequest {
                    method: &Method::POST,
                    uri: &url,
                    body: body.as_bytes(),
                    now: Utc::now(),
                    delivery_id: d.webhook_id.as_deref(),
                })
                .unwrap();
            (url, headers)
        };
        let response = self
            .client
            .post(&url)
            .headers(headers)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            attempt,
            status,
            body,
            retry_after,
        }
    }

    /// One copy as a sender sends it: retried after `Retry-After` on `409 event_in_progress`
    /// or a 5xx, as senders do (each retry is the sender's next attempt).
    async fn send_copy(&self, d: &Delivery, first_attempt: u32) -> Vec<Answer> {
        let mut answers = Vec::new();
        for attempt in first_attempt..first_attempt + 5 {
            let answer = self.post(d, attempt).await;
            let again = (answer.status == 409 && answer.code() == Some("event_in_progress"))
                || answer.status >= 500;
            let wait = answer.retry_after.unwrap_or(1).clamp(1, 60);
            answers.push(answer);
            if !again {
                break;
            }
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        answers
    }

    /// The first delivery and the copies sent at the same time.
    async fn first_round(&self, d: &Delivery) -> Vec<Answer> {
        let copies = (0..=d.concurrent).map(|k| self.send_copy(d, u32::try_from(k).unwrap()));
        join_all(copies).await.concat()
    }

    /// The copies sent after everything else, one after the other.
    async fn late_round(&self, d: &Delivery) -> Vec<Answer> {
        let mut answers = Vec::new();
        for k in 0..d.later {
            let attempt = u32::try_from(1 + d.concurrent + k).unwrap();
            answers.extend(self.send_copy(d, attempt).await);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        answers
    }
}

/// Sends `indexes` of `deliveries` with `round`, eight deliveries in flight.
async fn run_round<'a, F, Fut>(
    deliveries: &'a [Delivery],
    indexes: Vec<usize>,
    round: F,
) -> Vec<(usize, Vec<Answer>)>
where
    F: Fn(&'a Delivery) -> Fut,
    Fut: std::future::Future<Output = Vec<Answer>> + 'a,
{
    futures::stream::iter(indexes)
        .map(|i| {
            let fut = round(&deliveries[i]);
            async move { (i, fut.await) }
        })
        .buffer_unordered(8)
        .collect()
        .await
}

// ------------------------------------------------------------------ checking ----

/// Counts for the report, per source.
#[derive(Debug, Default, Clone)]
struct SourceCounts {
    deliveries: usize,
    posts: usize,
    events_posted: usize,
    accepted: u64,
    duplicates: u64,
    ignored: u64,
    warnings: u64,
    refused: u64,
    in_progress: u64,
    other_errors: u64,
}

const BODY_KEYS: [&str; 6] = [
    "accepted",
    "duplicates",
    "combined",
    "ignored",
    "warnings",
    "refused",
];

/// Checks every answer one delivery got; adds to `tally`.
fn check_answers(
    d: &Delivery,
    answers: &[Answer],
    tally: &mut SourceCounts,
    problems: &mut Vec<String>,
) {
    let mut problem = |text: String| problems.push(format!("{}: {text}", d.label));
    tally.deliveries += 1;
    tally.posts += answers.len();
    tally.events_posted += answers.len() * d.events;
    let mut accepted = 0;
    let mut any_2xx = false;
    let mut seen = BTreeSet::new();
    for a in answers {
        let at = format!("attempt {} answered {}", a.attempt, a.status);
        if a.status == 409 {
            if a.code() == Some("event_in_progress") {
                tally.in_progress += 1;
                if a.retry_after.is_none() {
                    problem(format!("{at} event_in_progress without Retry-After"));
                }
            } else {
                tally.other_errors += 1;
                problem(format!(
                    "{at} {}: a sender's retry must be answered 2xx as a duplicate",
                    a.body
                ));
            }
            continue;
        }
        if let Some(code) = d.refused {
            if a.status == 422 && a.code() == Some(code) {
                tally.refused += 1;
            } else {
                tally.other_errors += 1;
                problem(format!("{at} {}, want 422 {code}", a.body));
            }
            continue;
        }
        if a.status != 202 {
            tally.other_errors += 1;
            problem(format!("{at} {}, want 202", a.body));
            continue;
        }
        any_2xx = true;
        let Some(body) = a.body.as_object() else {
            problem(format!(
                "{at} with a body that is not an object: {}",
                a.body
            ));
            continue;
        };
        for key in body.keys() {
            if !BODY_KEYS.contains(&key.as_str()) {
                problem(format!("{at} with an unexpected key `{key}`: {}", a.body));
            }
        }
        let n = |k: &str| body.get(k).and_then(Value::as_u64);
        let (Some(acc), Some(dup)) = (n("accepted"), n("duplicates")) else {
            problem(format!("{at} without accepted/duplicates: {}", a.body));
            continue;
        };
        // Events of one contact in one HubSpot delivery are one change: the others count
        // as combined.
        let combined = n("combined").unwrap_or(0);
        tally.accepted += acc;
        tally.duplicates += dup;
        accepted += acc;
        if usize::try_from(acc + dup + combined).unwrap() != d.usable {
            problem(format!(
                "{at} {}: accepted + duplicates + combined should be the {} usable events",
                a.body, d.usable
            ));
        }
        match body.get("ignored") {
            None if d.ignored > 0 => {
                problem(format!("{at} {}: want \"ignored\": {}", a.body, d.ignored))
            }
            None => {}
            Some(v) => {
                tally.ignored += v.as_u64().unwrap_or(0);
                if d.ignored == 0 || v.as_u64() != Some(u64::try_from(d.ignored).unwrap()) {
                    problem(format!(
                        "{at} {}: want \"ignored\" {}",
                        a.body,
                        if d.ignored == 0 {
                            "absent".to_string()
                        } else {
                            d.ignored.to_string()
                        }
                    ));
                }
            }
        }
        match body.get("warnings") {
            None => {}
            Some(Value::Array(list)) if !list.is_empty() => {
                for w in list {
                    tally.warnings += 1;
                    let text = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("");
                    let got = warning(text("event"), text("field"), text("code"));
                    if !d.warnings.contains(&got) {
                        problem(format!(
                            "{at} an unexpected warning {w} (expected: {:?})",
                            d.warnings
                        ));
                    }
                    seen.insert(got);
                }
            }
            Some(other) => problem(format!(
                "{at} with \"warnings\": {other} (only when non-empty)"
            )),
        }
        if let Some(refused) = body.get("refused") {
            problem(format!(
                "{at} refusing {refused}; every event here identifies its contact"
            ));
        }
    }
    if any_2xx {
        let missing: Vec<_> = d.warnings.difference(&seen).collect();
        if !missing.is_empty() {
            problem(format!("never warned about {missing:?}"));
        }
        if d.events == 1 && d.usable == 1 && accepted != 1 {
            problem(format!(
                "accepted {accepted} times over {} answers (want exactly once)",
                answers.len()
            ));
        }
        if accepted > u64::try_from(d.usable).unwrap() {
            problem(format!("accepted {accepted} of {} usable events", d.usable));
        }
    }
}

fn text_of<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

/// Checks one vendor's records against the expected contacts: exactly one record per
/// contact (found by e-mail, or by phone where there is no valid e-mail), holding exactly
/// the expected phone, e-mail and name, and no other records.
fn check_records<R>(
    vendor: &str,
    records: &[R],
    expected: &[Expected],
    fields: impl Fn(&R) -> (Option<String>, Option<String>, Option<String>),
    problems: &mut Vec<String>,
) {
    for c in expected {
        let hits: Vec<_> = records
            .iter()
            .map(&fields)
            .filter(|(email, phone, _)| match c.email {
                Some(e) => email.as_deref() == Some(e),
                None => phone.as_deref() == c.phone,
            })
            .collect();
        let [(email, phone, name)] = hits.as_slice() else {
            problems.push(format!(
                "{vendor}: {} records for {} ({:?} / {:?}), want exactly 1",
                hits.len(),
                c.label,
                c.email,
                c.phone
            ));
            continue;
        };
        if phone.as_deref() != c.phone {
            problems.push(format!(
                "{vendor}: {} has phone {phone:?}, want {:?}",
                c.label, c.phone
            ));
        }
        if email.as_deref() != c.email {
            problems.push(format!(
                "{vendor}: {} has e-mail {email:?}, want {:?}",
                c.label, c.email
            ));
        }
        if let Some(want) = c.name
            && name.as_deref() != Some(want)
        {
            problems.push(format!(
                "{vendor}: {} has name {name:?}, want {want:?}",
                c.label
            ));
        }
        if let Some(p) = c.phone {
            let same_phone = records
                .iter()
                .map(&fields)
                .filter(|(_, phone, _)| phone.as_deref() == Some(p))
                .count();
            if same_phone != 1 {
                problems.push(format!(
                    "{vendor}: {same_phone} records hold {}'s phone {p}",
                    c.label
                ));
            }
        }
    }
    if records.len() != expected.len() {
        problems.push(format!(
            "{vendor}: {} records, want {} (one per identifiable contact)",
            records.len(),
            expected.len()
        ));
    }
}

// ---------------------------------------------------------------------- test ----

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_storm_of_real_format_webhooks_syncs_every_contact_exactly_once_with_exact_phones() {
    let started = Instant::now();
    let storm = build_storm();
    let deliveries = &storm.deliveries;

    // The mapping file: the built-ins plus the regional copies, each with its own secret.
    let mut mapping_text = BUILTIN_MAPPINGS.to_string();
    for def in SOURCES.iter().filter(|s| s.region.is_some()) {
        mapping_text.push_str(&copy_source(
            BUILTIN_MAPPINGS,
            def.base,
            def.name,
            def.region.unwrap(),
        ));
    }
    let dir = std::env::temp_dir().join(format!("relay-storm-{}", uid()));
    std::fs::create_dir_all(&dir).unwrap();
    let mapping_file = dir.join("mappings.toml");
    std::fs::write(&mapping_file, &mapping_text).unwrap();

    let secrets: BTreeMap<&'static str, SecretString> = SOURCES
        .iter()
        .map(|s| (s.name, secret_for(s.base)))
        .collect();
    let sandbox = Sandbox::start().await.unwrap();
    let config = LocalConfig {
        server: ServerSection {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: None,
        },
        mappings: Some(mapping_file.clone()),
        sources: secrets
            .iter()
            .map(|(name, secret)| {
                (
                    (*name).to_string(),
                    SourceSection {
                        secrets: vec![secret.clone()],
                    },
                )
            })
            .collect(),
        vendors: VendorConfigs {
            hubspot_crm: None,
            hood: Some(sandbox.hood_config()),
            channelio: Some(sandbox.channelio_config()),
            omnivibe: Some(sandbox.omnivibe_config()),
            chatwoot: Some(sandbox.chatwoot_config()),
        },
        worker: WorkerSection {
            concurrency: 4,
            drain_timeout_secs: 30,
        },
        limits: Default::default(),
    };
    let relay = LocalRelay::start(config, Storage::Memory).await;
    std::fs::remove_dir_all(&dir).ok();
    let relay = relay.unwrap_or_else(|e| {
        panic!("the relay must load the built-in mappings plus sources with `phone_region`: {e}")
    });
    assert!(
        relay.disabled_sources.is_empty(),
        "every storm source has a secret: {:?}",
        relay.disabled_sources
    );

    let sender = Sender {
        client: reqwest::Client::new(),
        base: format!("http://{}", relay.addr()),
        verifiers: SOURCES
            .iter()
            .map(|s| {
                (
                    s.name,
                    Verifier::new(&scheme_of(s.base), &[secrets[s.name].clone()]).unwrap(),
                )
            })
            .collect(),
    };

    // Phase 1: first deliveries (some with a copy at the same time); phase 2: the later
    // changes; phase 3: the senders' late retries.
    let first: Vec<usize> = (0..deliveries.len())
        .filter(|i| !deliveries[*i].update)
        .collect();
    let updates: Vec<usize> = (0..deliveries.len())
        .filter(|i| deliveries[*i].update)
        .collect();
    let late: Vec<usize> = (0..deliveries.len())
        .filter(|i| deliveries[*i].later > 0)
        .collect();
    let mut answers: Vec<Vec<Answer>> = vec![Vec::new(); deliveries.len()];
    for (i, got) in run_round(deliveries, first, |d| sender.first_round(d)).await {
        answers[i].extend(got);
    }
    let phase1 = started.elapsed();
    for (i, got) in run_round(deliveries, updates, |d| sender.first_round(d)).await {
        answers[i].extend(got);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (i, got) in run_round(deliveries, late, |d| sender.late_round(d)).await {
        answers[i].extend(got);
    }
    let sent_in = started.elapsed();

    let idle = relay.idle(Duration::from_secs(150)).await;
    let drained_in = started.elapsed();
    let counts = relay.metrics.snapshot();
    let dead_letters = relay.dead_letters.clone();
    let stopped = relay.shutdown().await;
    let mut dead_reasons: BTreeMap<String, usize> = BTreeMap::new();
    loop {
        let batch = dead_letters
            .receive(10, Duration::from_millis(10))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for m in &batch {
            let reason = m.attributes.get("reason").cloned().unwrap_or_default();
            *dead_reasons.entry(reason).or_default() += 1;
            dead_letters.delete(&m.receipt).await.unwrap();
        }
    }

    // ---- answers ----
    let mut problems: Vec<String> = Vec::new();
    let mut per_source: BTreeMap<&str, SourceCounts> = BTreeMap::new();
    for (d, got) in deliveries.iter().zip(&answers) {
        check_answers(
            d,
            got,
            per_source.entry(d.source).or_default(),
            &mut problems,
        );
    }

    // ---- every usable event synced exactly once per vendor, nothing lost ----
    let mut want_synced: BTreeMap<Vendor, u64> = BTreeMap::new();
    for d in deliveries {
        for vendor in d.vendors() {
            *want_synced.entry(*vendor).or_default() += u64::try_from(d.changes).unwrap();
        }
    }
    let count = |v: Vendor, c: Counter| counts.get(&(v, c)).copied().unwrap_or(0);
    for (vendor, want) in &want_synced {
        let synced = count(*vendor, Counter::Synced);
        if synced != *want {
            problems.push(format!(
                "{vendor}: {synced} deliveries synced, want {want} (one per contact change)"
            ));
        }
    }
    if !idle {
        problems.push("the queue did not drain within 150 s".into());
    }
    if (stopped.undelivered, stopped.dead_letters) != (0, 0) {
        problems.push(format!(
            "shutdown left {} undelivered and {} dead letters: {dead_reasons:?}",
            stopped.undelivered, stopped.dead_letters
        ));
    }

    // ---- vendor records ----
    let contacts = &storm.contacts;
    let hood = sandbox.hood_profiles();
    check_records(
        "hood",
        &hood,
        contacts,
        |p| {
            (
                p.email.clone(),
                p.mobile_phone_number.clone(),
                p.full_name.clone(),
            )
        },
        &mut problems,
    );
    let users = sandbox.channelio_users();
    let user_fields = |u: &relay_sandbox::ChannelUser| {
        (
            text_of(&u.profile, "email").map(str::to_string),
            text_of(&u.profile, "mobileNumber").map(str::to_string),
            text_of(&u.profile, "name").map(str::to_string),
        )
    };
    check_records("channelio", &users, contacts, user_fields, &mut problems);
    for c in contacts {
        let user = users.iter().find(|u| {
            let (email, phone, _) = user_fields(u);
            match c.email {
                Some(e) => email.as_deref() == Some(e),
                None => phone.as_deref() == c.phone,
            }
        });
        if let Some(user) = user
            && user.tags != c.tags
        {
            problems.push(format!(
                "channelio: {} has tags {:?}, want {:?}",
                c.label, user.tags, c.tags
            ));
        }
    }
    let chatwoot = sandbox.chatwoot_contacts();
    check_records(
        "chatwoot",
        &chatwoot,
        contacts,
        |c| (c.email.clone(), c.phone_number.clone(), c.name.clone()),
        &mut problems,
    );
    let agent = sandbox.omnivibe_agent();
    if let Some((name, display, phone)) = storm.agent {
        let got = (
            agent.name.as_str(),
            agent.display_name.as_deref(),
            agent.phone_number.as_deref(),
        );
        if got != (name, Some(display), Some(phone)) {
            problems.push(format!(
                "omnivibe agent is {got:?}, want {:?}",
                (name, Some(display), Some(phone))
            ));
        }
    }

    // ---- vendor rules and limits ----
    let violations = sandbox.violations();
    for v in &violations {
        problems.push(format!(
            "{} broke `{}` on {} {:?} ({}): {}",
            v.vendor, v.rule, v.method, v.route, v.status, v.message
        ));
    }
    let hood_requests = sandbox.requests_of(Vendor::Hood);
    let hood_times: Vec<i64> = hood_requests
        .iter()
        .map(|r| r.at.timestamp_millis())
        .collect();
    let (per_second, per_minute) = (
        max_in_window(&hood_times, 1_000),
        max_in_window(&hood_times, 60_000),
    );
    if sandbox.rate_limit_violations() > 0 || per_second > 10 || per_minute > 150 {
        problems.push(format!(
            "hood: {} requests over the limit; at most {per_second} in a second and {per_minute} in a minute",
            sandbox.rate_limit_violations()
        ));
    }

    // ---- the numbers for the release note ----
    eprintln!(
        "\n== storm: {} deliveries, {} contacts ==",
        deliveries.len(),
        contacts.len()
    );
    eprintln!(
        "{:<13} {:>5} {:>5} {:>6} {:>8} {:>10} {:>7} {:>8} {:>7} {:>11} {:>6}",
        "source",
        "deliv",
        "posts",
        "events",
        "accepted",
        "duplicates",
        "ignored",
        "warnings",
        "refused",
        "in_progress",
        "errors"
    );
    let mut total = SourceCounts::default();
    for (source, t) in &per_source {
        eprintln!(
            "{source:<13} {:>5} {:>5} {:>6} {:>8} {:>10} {:>7} {:>8} {:>7} {:>11} {:>6}",
            t.deliveries,
            t.posts,
            t.events_posted,
            t.accepted,
            t.duplicates,
            t.ignored,
            t.warnings,
            t.refused,
            t.in_progress,
            t.other_errors
        );
        total.deliveries += t.deliveries;
        total.posts += t.posts;
        total.events_posted += t.events_posted;
        total.accepted += t.accepted;
        total.duplicates += t.duplicates;
        total.ignored += t.ignored;
        total.warnings += t.warnings;
        total.refused += t.refused;
        total.in_progress += t.in_progress;
        total.other_errors += t.other_errors;
    }
    eprintln!(
        "{:<13} {:>5} {:>5} {:>6} {:>8} {:>10} {:>7} {:>8} {:>7} {:>11} {:>6}",
        "all",
        total.deliveries,
        total.posts,
        total.events_posted,
        total.accepted,
        total.duplicates,
        total.ignored,
        total.warnings,
        total.refused,
        total.in_progress,
        total.other_errors
    );
    let unique_events: usize = deliveries.iter().map(|d| d.events).sum();
    let usable_events: usize = deliveries.iter().map(|d| d.usable).sum();
    eprintln!("distinct events {unique_events}, of them usable {usable_events}");
    let mut phones: BTreeMap<&str, usize> = BTreeMap::new();
    for c in contacts {
        *phones.entry(c.country).or_default() += 1;
    }
    eprintln!(
        "contacts expected {} — hood {} · channelio {} · chatwoot {}; agent updates {}",
        contacts.len(),
        hood.len(),
        users.len(),
        chatwoot.len(),
        agent.updates
    );
    eprintln!("phones checked per country (\"-\" = invalid, checked absent): {phones:?}");
    eprintln!("worker counts: {counts:?}");
    eprintln!(
        "hood requests {} (most {per_second}/s, {per_minute}/min); sandbox violations {}; dead letters {dead_reasons:?}",
        hood_requests.len(),
        violations.len()
    );
    eprintln!(
        "time: first deliveries sent {:.1} s, all sent {:.1} s, drained {:.1} s, total {:.1} s",
        phase1.as_secs_f64(),
        sent_in.as_secs_f64(),
        drained_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    sandbox.shutdown().await;

    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
