//! The sandbox vendors (`relay_sandbox`): driven by the relay's real clients and
//! sync operations with the plans of the built-in samples (everything accepted, the
//! expected state stored, the wire requests exactly the planned ones), and by raw calls
//! that break one vendor rule each and get the vendor's documented answer.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use relay_sandbox::samples::{SAMPLES, sample};
use relay_sandbox::{RecordedRequest, Rule, Sandbox, SandboxOptions};
use relay_shared::mapping::{EventDefaults, Mappings};
use relay_shared::model::{ContactChange, ContactKey, PersonId};
use relay_shared::plan::{
    PlannedRequest, VendorState, plan_channelio, plan_chatwoot, plan_hood, plan_omnivibe,
};
use relay_shared::store::{Clock, ManualClock};
use relay_shared::vendors::{
    ChannelClient, ChatwootClient, HoodClient, OmnivibeClient, SyncError, SyncOutcome, Vendor,
    VendorSync,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

// ------------------------------------------------------------------------ helpers ----

fn mappings() -> &'static Mappings {
    static M: OnceLock<Mappings> = OnceLock::new();
    M.get_or_init(|| Mappings::builtin().unwrap())
}

fn changes(source: &str) -> Vec<ContactChange> {
    let body: Value = serde_json::from_str(sample(source).unwrap().body).unwrap();
    let defaults = EventDefaults {
        event_id: "msg_1".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 20, 15, 0, 0).unwrap(),
    };
    let mut changes = mappings()
        .source(source)
        .unwrap()
        .extract(&body, &defaults)
        .unwrap();
    // Ingest's identity step gives each change its person; here one per contact key.
    for change in &mut changes {
        change.contact.person = Some(person_of(change.contact.key.as_str()));
    }
    changes
}

/// The person id this harness gives a contact key (stable, one per key).
fn person_of(key: &str) -> PersonId {
    let hex = ContactKey::external("test", key).unwrap().hashed();
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
    }
    PersonId::from_uuid_bytes(bytes)
}

/// A whole second, 250 ms in: rate-limit windows start at whole seconds and minutes.
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 15, 0, 0).unwrap() + TimeDelta::milliseconds(250)
}

/// Options with a clock that moves only when told: rate-limit counts then do not depend
/// on how fast the machine is.
fn manual() -> (SandboxOptions, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(t0()));
    let options = SandboxOptions {
        clock: clock.clone(),
        ..SandboxOptions::default()
    };
    (options, clock)
}

/// A clock that moves 100 ms each time it is read (the sandbox reads it two or three
/// times per request): deterministic, and slow enough in requests per second that tests
/// about other rules stay inside Hood's burst limit.
#[derive(Debug)]
struct SteppingClock(ManualClock);

impl Clock for SteppingClock {
    fn now(&self) -> DateTime<Utc> {
        self.0.advance(TimeDelta::milliseconds(100));
        self.0.now()
    }
}

async fn start() -> Sandbox {
    Sandbox::start_with(SandboxOptions {
        clock: Arc::new(SteppingClock(ManualClock::new(t0()))),
        ..SandboxOptions::default()
    })
    .await
    .unwrap()
}

/// A sandbox whose clock stands still.
async fn start_frozen() -> Sandbox {
    Sandbox::start_with(manual().0).await.unwrap()
}

/// What one vendor did with one change.
#[derive(Debug)]
enum Outcome {
    Skipped,
    Synced(SyncOutcome),
    Failed(#[allow(dead_code, reason = "shown by Debug in failure messages")] SyncError),
}

#[derive(Debug)]
struct Delivery {
    vendor: Vendor,
    planned: Vec<PlannedRequest>,
    outcome: Outcome,
}

/// The relay's real clients pointed at the sandbox, plus the links the worker would store
/// (vendor id and applied fingerprints per contact and vendor).
struct Relay {
    hood: HoodClient,
    channel: ChannelClient,
    omnivibe: OmnivibeClient,
    chatwoot: ChatwootClient,
    account: u64,
    links: HashMap<(String, Vendor), VendorState>,
}

impl Relay {
    fn new(sb: &Sandbox) -> Self {
        Relay {
            hood: HoodClient::new(&sb.hood_config()).unwrap(),
            channel: ChannelClient::new(&sb.channelio_config()).unwrap(),
            omnivibe: OmnivibeClient::new(&sb.omnivibe_config()).unwrap(),
            chatwoot: ChatwootClient::new(&sb.chatwoot_config()).unwrap(),
            account: sb.credentials().chatwoot_account_id,
            links: HashMap::new(),
        }
    }

    /// Plans and syncs `change` for every vendor of its source, like the worker.
    async fn deliver(&mut self, change: &ContactChange) -> Vec<Delivery> {
        self.deliver_only(change, None).await
    }

    /// [`Relay::deliver`], restricted to `only` when given.
    async fn deliver_only(
        &mut self,
        change: &ContactChange,
        only: Option<Vendor>,
    ) -> Vec<Delivery> {
        let m = mappings();
        let source = m.source(&change.event.source).unwrap();
        let key = change.contact.key.hashed();
        let mut out = Vec::new();
        for &vendor in source
            .vendors
            .iter()
            .filter(|v| only.is_none_or(|o| o == **v))
        {
            let state = self
                .links
                .get(&(key.clone(), vendor))
                .cloned()
                .unwrap_or_default();
            let (planned, applied, result) = match vendor {
                Vendor::Hood => {
                    let p = plan_hood(change, &state, m.vendors.hood().unwrap(), &BTreeSet::new())
                        .unwrap();
                    let r = p.plan.requests();
                    let res = if r.is_empty() {
                        None
                    } else {
                        Some(self.hood.sync(&p.plan).await)
                    };
                    (r, p.applied, res)
                }
                Vendor::Channelio => {
                    let p = plan_channelio(change, &state, m.vendors.channelio().unwrap()).unwrap();
                    let r = p.plan.requests();
                    let res = if r.is_empty() {
                        None
                    } else {
                        Some(self.channel.sync(&p.plan).await)
                    };
                    (r, p.applied, res)
                }
                Vendor::Omnivibe => {
                    let p = plan_omnivibe(change, &state, m.vendors.omnivibe().unwrap()).unwrap();
                    let r = p.plan.requests();
                    let res = if r.is_empty() {
                        None
                    } else {
                        Some(self.omnivibe.sync(&p.plan).await)
                    };
                    (r, p.applied, res)
                }
                Vendor::Chatwoot => {
                    let p = plan_chatwoot(change, &state, m.vendors.chatwoot().unwrap()).unwrap();
                    let r = p.plan.requests(self.account);
                    let res = if r.is_empty() {
                        None
                    } else {
                        Some(self.chatwoot.sync(&p.plan).await)
                    };
                    (r, p.applied, res)
                }
            };
            let outcome = match result {
                None => Outcome::Skipped,
                Some(Ok(o)) => {
                    let link = self.links.entry((key.clone(), vendor)).or_default();
                    if o.vendor_id.is_some() {
                        link.vendor_id = o.vendor_id.clone();
                    }
                    link.applied.extend(applied);
                    Outcome::Synced(o)
                }
                Some(Err(e)) => Outcome::Failed(e),
            };
            out.push(Delivery {
                vendor,
                planned,
                outcome,
            });
        }
        out
    }

    async fn deliver_all(&mut self, source: &str) -> Vec<Delivery> {
        let mut all = Vec::new();
        for change in changes(source) {
            all.extend(self.deliver(&change).await);
        }
        all
    }

    async fn deliver_all_to(&mut self, source: &str, vendor: Vendor) -> Vec<Delivery> {
        let mut all = Vec::new();
        for change in changes(source) {
            all.extend(self.deliver_only(&change, Some(vendor)).await);
        }
        all
    }
}

fn assert_no_failures(deliveries: &[Delivery]) {
    for d in deliveries {
        assert!(
            !matches!(d.outcome, Outcome::Failed(_)),
            "{:?} failed: {:?}",
            d.vendor,
            d.outcome
        );
    }
}

/// No rule broken and every answer a success.
fn assert_clean(sb: &Sandbox) {
    assert_eq!(sb.violations(), vec![], "violations");
    let refused: Vec<_> = sb
        .requests()
        .into_iter()
        .filter(|r| !(200..300).contains(&r.status))
        .collect();
    assert!(refused.is_empty(), "refused requests: {refused:?}");
}

/// Percent-decodes (and, for query parts, reads `+` as a space).
fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

/// The request as sent, in a form that ignores harmless encoding differences: method,
/// decoded path, decoded query pairs, JSON body.
type Wire = (String, String, Vec<(String, String)>, Option<Value>);

fn recorded_wire(r: &RecordedRequest) -> Wire {
    (
        r.method.to_string(),
        decode(&r.path, false),
        query_pairs(r.query.as_deref()),
        r.body.clone(),
    )
}

fn planned_wire(p: &PlannedRequest, id: &str) -> Wire {
    let full = p.path.replace("{id}", id);
    let (path, query) = match full.split_once('?') {
        Some((path, q)) => (path.to_owned(), Some(q.to_owned())),
        None => (full, None),
    };
    (
        p.method.to_string(),
        decode(&path, false),
        query_pairs(query.as_deref()),
        p.body.clone(),
    )
}

fn routes(sb: &Sandbox, vendor: Vendor) -> Vec<(String, String, u16)> {
    sb.requests_of(vendor)
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.route.clone().unwrap_or_default(),
                r.status,
            )
        })
        .collect()
}

fn rr(method: &str, route: &str, status: u16) -> (String, String, u16) {
    (method.to_owned(), route.to_owned(), status)
}

/// A raw answer.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A raw HTTP call: `headers` as given, `body` sent with `content_type` (or none).
async fn call(method: &str, url: &str, headers: &[(&str, String)], body: Body) -> Answer {
    let client = reqwest::Client::new();
    let mut req = client.request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    if let Some((content_type, text)) = body {
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        req = req.body(text);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Answer {
        status,
        headers,
        body,
    }
}

/// A request body: content type (empty: no header) and text.
type Body = Option<(&'static str, String)>;

fn json_body(v: impl Into<Value>) -> Body {
    Some(("application/json", v.into().to_string()))
}

fn hood_auth(sb: &Sandbox) -> Vec<(&'static str, String)> {
    vec![(
        "authorization",
        format!("Bearer {}", sb.credentials().hood_token.expose_secret()),
    )]
}

fn channel_auth(sb: &Sandbox) -> Vec<(&'static str, String)> {
    let c = sb.credentials();
    vec![
        (
            "x-access-key",
            c.channel_access_key.expose_secret().to_owned(),
        ),
        (
            "x-access-secret",
            c.channel_access_secret.expose_secret().to_owned(),
        ),
    ]
}

fn omnivibe_auth(sb: &Sandbox) -> Vec<(&'static str, String)> {
    vec![(
        "api_access_token",
        sb.credentials().omnivibe_token.expose_secret().to_owned(),
    )]
}

fn chatwoot_auth(sb: &Sandbox) -> Vec<(&'static str, String)> {
    vec![(
        "api_access_token",
        sb.credentials().chatwoot_token.expose_secret().to_owned(),
    )]
}

fn rules(sb: &Sandbox) -> Vec<Rule> {
    sb.violations().iter().map(|v| v.rule).collect()
}

/// Hood's error body: `{code, title, message, trace_id}` with `code` = status.
fn assert_hood_error(a: &Answer, status: u16) {
    assert_eq!(a.status, status, "{}", a.body);
    assert_eq!(a.body["code"], json!(status), "{}", a.body);
    assert!(a.body["title"].is_string(), "{}", a.body);
    assert!(a.body["message"].is_string(), "{}", a.body);
    assert_eq!(
        a.body["trace_id"].as_str().map(str::len),
        Some(36),
        "{}",
        a.body
    );
}

// ------------------------------------------------------ the relay's real clients ----

#[tokio::test]
async fn typeform_sample_reaches_every_vendor_exactly_as_planned() {
    let sb = start().await;
    let mut relay = Relay::new(&sb);
    let deliveries = relay.deliver_all("typeform").await;
    assert_no_failures(&deliveries);
    assert_clean(&sb);

    // Hood: the plan's requests, in the order the sync sends them: lookups first, then
    // (after listing the defined properties once) the property definitions, then the
    // create and the PATCH of the fields the create page does not document.
    let profile = &sb.hood_profiles()[0];
    let hood = deliveries
        .iter()
        .find(|d| d.vendor == Vendor::Hood)
        .unwrap();
    let planned: Vec<Wire> = hood
        .planned
        .iter()
        .map(|p| planned_wire(p, &profile.id))
        .collect();
    let is_property = |w: &Wire| w.1 == "/v1/hood/profile-properties";
    let is_lookup = |w: &Wire| w.0 == "GET";
    let mut expected: Vec<Wire> = planned.iter().filter(|w| is_lookup(w)).cloned().collect();
    expected.push((
        "GET".into(),
        "/v1/hood/profile-properties".into(),
        vec![],
        None,
    ));
    expected.extend(planned.iter().filter(|w| is_property(w)).cloned());
    expected.extend(
        planned
            .iter()
            .filter(|w| !is_property(w) && !is_lookup(w))
            .cloned(),
    );
    assert_eq!(expected.len(), 7);
    let sent: Vec<Wire> = sb
        .requests_of(Vendor::Hood)
        .iter()
        .map(recorded_wire)
        .collect();
    assert_eq!(sent, expected);
    assert!(
        matches!(&hood.outcome, Outcome::Synced(o) if o.vendor_id.as_deref() == Some(profile.id.as_str()) && o.calls == 7)
    );

    // Channel.io and Chatwoot: exactly the planned requests.
    for vendor in [Vendor::Channelio, Vendor::Chatwoot] {
        let d = deliveries.iter().find(|d| d.vendor == vendor).unwrap();
        let sent: Vec<Wire> = sb.requests_of(vendor).iter().map(recorded_wire).collect();
        let planned: Vec<Wire> = d.planned.iter().map(|p| planned_wire(p, "")).collect();
        assert_eq!(sent, planned, "{vendor}");
    }

    // The stored state.
    assert_eq!(sb.hood_profiles().len(), 1);
    assert_eq!(profile.id, "2000001");
    assert_eq!(profile.email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(profile.mobile_phone_number.as_deref(), Some("+14155552671"));
    assert_eq!(profile.full_name.as_deref(), Some("Ann Lee"));
    assert_eq!(profile.country.as_deref(), Some("US"));
    assert_eq!(
        profile.custom_properties,
        [("company_name", "Acme Inc"), ("utm_source", "newsletter")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    );
    let labels: Vec<String> = sb.hood_properties().into_iter().map(|p| p.label).collect();
    assert_eq!(labels, vec!["company_name", "utm_source"]);

    let users = sb.channelio_users();
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].member_id.as_deref(),
        Some(person_of("email:ann.lee@example.com").as_str())
    );
    assert_eq!(
        Value::Object(users[0].profile.clone()),
        json!({"companyName": "Acme Inc", "email": "ann.lee@example.com",
               "mobileNumber": "+14155552671", "name": "Ann Lee", "utmSource": "newsletter"})
    );
    assert_eq!(users[0].tags, vec!["Product_news", "Beta_program"]);
    assert!(!users[0].unsubscribe_email);

    let contacts = sb.chatwoot_contacts();
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(c.id, 1);
    assert_eq!(c.email.as_deref(), Some("ann.lee@example.com"));
    assert_eq!(c.phone_number.as_deref(), Some("+14155552671"));
    assert_eq!(
        c.identifier.as_deref(),
        Some(person_of("email:ann.lee@example.com").as_str())
    );
    assert_eq!(c.name.as_deref(), Some("Ann Lee"));
    assert_eq!(
        Value::Object(c.custom_attributes.clone()),
        json!({"utm_source": "newsletter"})
    );
    assert_eq!(
        Value::Object(c.additional_attributes.clone()),
        json!({"company_name": "Acme Inc"})
    );
    assert_eq!(sb.omnivibe_agent().updates, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn every_sample_syncs_into_a_fresh_sandbox_without_violations() {
    // (source, hood profiles, hood properties, channel.io users, chatwoot contacts, agent updates)
    let expected = [
        ("typeform", 1, 2, 1, 1, 0),
        ("tally", 1, 2, 1, 1, 0),
        ("webflow", 1, 1, 1, 1, 0),
        ("hubspot", 1, 0, 1, 1, 0),
        ("pipedrive", 1, 0, 1, 1, 0),
        ("standard", 1, 3, 1, 1, 0),
        ("app-contact", 1, 2, 1, 1, 0),
        ("app-staff", 0, 0, 0, 0, 1),
    ];
    assert_eq!(expected.len(), SAMPLES.len());
    for (source, profiles, properties, users, contacts, updates) in expected {
        let sb = start().await;
        let mut relay = Relay::new(&sb);
        let deliveries = relay.deliver_all(source).await;
        assert_no_failures(&deliveries);
        assert_clean(&sb);
        let synced = deliveries
            .iter()
            .filter(|d| matches!(d.outcome, Outcome::Synced(_)))
            .count();
        assert!(synced > 0, "{source}: nothing synced");
        let got = (
            sb.hood_profiles().len(),
            sb.hood_properties().len(),
            sb.channelio_users().len(),
            sb.chatwoot_contacts().len(),
            sb.omnivibe_agent().updates,
        );
        assert_eq!(
            got,
            (profiles, properties, users, contacts, updates),
            "{source}"
        );
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn a_hubspot_batch_is_one_record_and_one_change_per_contact() {
    let sb = start().await;
    let mut relay = Relay::new(&sb);
    let deliveries = relay.deliver_all("hubspot").await;
    assert_no_failures(&deliveries);
    assert_clean(&sb);

    let profiles = sb.hood_profiles();
    assert_eq!(profiles.len(), 1);
    assert_eq!(profiles[0].email.as_deref(), Some("dana@example.com"));
    assert_eq!(
        profiles[0].mobile_phone_number.as_deref(),
        Some("+16175550121")
    );
    // The four events of contact 901 are one change: looked up by e-mail and phone, then
    // created with both in one call.
    assert_eq!(
        routes(&sb, Vendor::Hood),
        vec![
            rr("GET", "/v1/hood/profiles", 200),
            rr("GET", "/v1/hood/profiles", 200),
            rr("POST", "/v1/hood/profiles", 201),
        ]
    );

    let users = sb.channelio_users();
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].member_id.as_deref(),
        Some(person_of("hubspot:901").as_str())
    );
    assert_eq!(
        Value::Object(users[0].profile.clone()),
        json!({"email": "dana@example.com", "mobileNumber": "+16175550121"})
    );
    assert_eq!(users[0].version, 1, "one upsert");

    let contacts = sb.chatwoot_contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(
        contacts[0].identifier.as_deref(),
        Some(person_of("hubspot:901").as_str())
    );
    assert_eq!(contacts[0].email.as_deref(), Some("dana@example.com"));
    assert_eq!(contacts[0].phone_number.as_deref(), Some("+16175550121"));
    assert_eq!(
        routes(&sb, Vendor::Chatwoot),
        vec![
            rr("GET", "/api/v1/accounts/{account_id}/contacts/search", 200),
            rr("POST", "/api/v1/accounts/{account_id}/contacts", 200),
        ]
    );
    sb.shutdown().await;
}

fn changes_of(source: &str, body: &Value) -> Vec<ContactChange> {
    let defaults = EventDefaults {
        event_id: "msg_2".into(),
        received_at: Utc.with_ymd_and_hms(2026, 11, 20, 15, 5, 0).unwrap(),
    };
    let mut changes = mappings()
        .source(source)
        .unwrap()
        .extract(body, &defaults)
        .unwrap();
    for change in &mut changes {
        change.contact.person = Some(person_of(change.contact.key.as_str()));
    }
    changes
}

/// One HubSpot edit of four properties of a contact already synced: one call per vendor,
/// carrying all four (the full name made of the first and last name).
#[tokio::test]
async fn a_hubspot_edit_of_four_properties_is_one_call_per_vendor() {
    // An account in use: Hood already defines the company property.
    let sb = Sandbox::start_with(SandboxOptions {
        clock: Arc::new(SteppingClock(ManualClock::new(t0()))),
        hood_properties: vec!["company_name".into()],
        ..SandboxOptions::default()
    })
    .await
    .unwrap();
    let mut relay = Relay::new(&sb);
    // The sample batch creates contact 901, here with a company too (so this process has
    // read Hood's property definitions, once, before the edit).
    let mut first: Value = serde_json::from_str(sample("hubspot").unwrap().body).unwrap();
    first.as_array_mut().unwrap().push(json!({
        "eventId": 3817289206_u64, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452,
        "occurredAt": 1763647201600_i64, "subscriptionType": "contact.propertyChange",
        "attemptNumber": 0, "objectId": 901, "propertyName": "company", "propertyValue": "Łukasik",
        "changeSource": "CRM_UI", "sourceId": "userId:100"}));
    for change in changes_of("hubspot", &first) {
        assert_no_failures(&relay.deliver(&change).await);
    }
    let before: Vec<usize> = [Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot]
        .iter()
        .map(|v| sb.requests_of(*v).len())
        .collect();
    let at = 1_763_647_500_000_i64;
    let edit = |id: u64, ms: i64, name: &str, value: &str| {
        json!({"eventId": id, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452,
               "occurredAt": ms, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
               "objectId": 901, "propertyName": name, "propertyValue": value,
               "changeSource": "CRM_UI", "sourceId": "userId:100"})
    };
    let body = json!([
        edit(3817289301, at, "firstname", "Dana"),
        edit(3817289302, at + 2, "lastname", "O'Brien-Łukasik"),
        edit(3817289303, at + 3, "email", "Dana.OBrien+work@Example.com"),
        edit(3817289304, at + 4, "company", "Łukasik & Söhne"),
    ]);
    let [change] = changes_of("hubspot", &body).try_into().unwrap();
    let deliveries = relay.deliver(&change).await;
    assert_no_failures(&deliveries);
    assert_clean(&sb);
    let after: Vec<Vec<(String, String, u16)>> =
        [Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot]
            .iter()
            .zip(&before)
            .map(|(v, n)| routes(&sb, *v)[*n..].to_vec())
            .collect();
    assert_eq!(
        after,
        vec![
            vec![rr("PATCH", "/v1/hood/profiles/{id}", 204)],
            vec![rr("PUT", "/open/v5/users/{user}", 200)],
            vec![rr(
                "PUT",
                "/api/v1/accounts/{account_id}/contacts/{id}",
                200
            )],
        ]
    );
    let profiles = sb.hood_profiles();
    assert_eq!(profiles.len(), 1);
    assert_eq!(
        profiles[0].full_name.as_deref(),
        Some("Dana O'Brien-Łukasik")
    );
    assert_eq!(
        profiles[0].email.as_deref(),
        Some("dana.obrien+work@example.com")
    );
    let users = sb.channelio_users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].profile["name"], json!("Dana O'Brien-Łukasik"));
    let contacts = sb.chatwoot_contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].name.as_deref(), Some("Dana O'Brien-Łukasik"));
    sb.shutdown().await;
}

#[tokio::test]
async fn a_redelivery_without_links_finds_the_records_instead_of_duplicating() {
    let sb = start().await;
    assert_no_failures(&Relay::new(&sb).deliver_all("typeform").await);
    // A second relay instance knows no links: Hood and Chatwoot are found by lookup.
    assert_no_failures(&Relay::new(&sb).deliver_all("typeform").await);
    assert_clean(&sb);
    assert_eq!(sb.hood_profiles().len(), 1);
    assert_eq!(sb.chatwoot_contacts().len(), 1);
    assert_eq!(sb.channelio_users().len(), 1);
    assert_eq!(sb.channelio_users()[0].version, 2);
    let second_run: Vec<_> = routes(&sb, Vendor::Hood).split_off(7);
    assert_eq!(
        second_run,
        vec![
            rr("GET", "/v1/hood/profiles", 200),
            rr("GET", "/v1/hood/profile-properties", 200),
            rr("PATCH", "/v1/hood/profiles/{id}", 204),
        ]
    );
    let chatwoot = routes(&sb, Vendor::Chatwoot);
    assert_eq!(
        chatwoot[2..],
        [
            rr("GET", "/api/v1/accounts/{account_id}/contacts/search", 200),
            rr("PUT", "/api/v1/accounts/{account_id}/contacts/{id}", 200),
        ]
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_201_without_a_body_is_resolved_by_looking_the_profile_up() {
    let (mut options, _clock) = manual();
    options.hood_create_answers_profile = false;
    let sb = Sandbox::start_with(options).await.unwrap();
    let mut relay = Relay::new(&sb);
    let change = changes("typeform").remove(0);
    let deliveries = relay.deliver(&change).await;
    assert_no_failures(&deliveries);
    assert_clean(&sb);
    let hood = deliveries
        .iter()
        .find(|d| d.vendor == Vendor::Hood)
        .unwrap();
    assert!(
        matches!(&hood.outcome, Outcome::Synced(o) if o.vendor_id.as_deref() == Some("2000001"))
    );
    let create = sb
        .requests_of(Vendor::Hood)
        .into_iter()
        .find(|r| r.method == http::Method::POST && r.path == "/v1/hood/profiles")
        .unwrap();
    assert_eq!((create.status, create.body.is_some()), (201, true));
    assert_eq!(
        routes(&sb, Vendor::Hood)[5..],
        [
            rr("POST", "/v1/hood/profiles", 201),
            rr("GET", "/v1/hood/profiles", 200),
            rr("PATCH", "/v1/hood/profiles/{id}", 204),
        ]
    );
    assert_eq!(sb.hood_profiles()[0].custom_properties.len(), 2);
    sb.shutdown().await;
}

#[tokio::test]
async fn two_relays_defining_the_same_property_end_with_one_and_no_violation() {
    let (options, clock) = manual();
    let sb = Sandbox::start_with(options).await.unwrap();
    let mut a = Relay::new(&sb);
    let mut b = Relay::new(&sb);
    // B learns the property list (only company_name) while defining it.
    assert_no_failures(&b.deliver_all_to("webflow", Vendor::Hood).await);
    clock.advance(TimeDelta::seconds(1));
    // A defines utm_source behind B's back.
    assert_no_failures(&a.deliver_all_to("typeform", Vendor::Hood).await);
    clock.advance(TimeDelta::seconds(1));
    // B believes utm_source is missing: its create is refused, it lists again and goes on.
    let deliveries = b.deliver_all_to("tally", Vendor::Hood).await;
    assert_no_failures(&deliveries);
    let labels: Vec<String> = sb.hood_properties().into_iter().map(|p| p.label).collect();
    assert_eq!(labels, vec!["company_name", "utm_source"]);
    let refused: Vec<_> = sb
        .requests()
        .into_iter()
        .filter(|r| r.status == 400)
        .collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].route.as_deref(),
        Some("/v1/hood/profile-properties")
    );
    assert_eq!(sb.violation_count(), 0);
    let bo = sb
        .hood_profiles()
        .into_iter()
        .find(|p| p.email.as_deref() == Some("bo@example.org"))
        .unwrap();
    assert_eq!(
        bo.custom_properties.get("utm_source").map(String::as_str),
        Some("twitter")
    );
    sb.shutdown().await;
}

#[tokio::test]
async fn staff_sample_updates_the_omnivibe_agent() {
    let sb = start().await;
    let deliveries = Relay::new(&sb).deliver_all("app-staff").await;
    assert_no_failures(&deliveries);
    assert_clean(&sb);
    assert!(
        matches!(&deliveries[0].outcome, Outcome::Synced(o) if o.vendor_id.as_deref() == Some("1"))
    );
    let agent = sb.omnivibe_agent();
    assert_eq!(agent.name, "Hana Kim");
    assert_eq!(agent.display_name.as_deref(), Some("Hana"));
    assert_eq!(
        agent.message_signature.as_deref(),
        Some("Hana Kim · Support")
    );
    assert_eq!(agent.phone_number.as_deref(), Some("+12125550166"));
    // The login e-mail is not synced by the built-in mapping.
    assert_eq!(agent.email, "agent@sandbox.invalid");
    assert_eq!(agent.updates, 1);
    sb.shutdown().await;
}

// -------------------------------------------------------------------------- Hood ----

#[tokio::test]
async fn hood_refuses_missing_or_wrong_credentials() {
    let sb = start().await;
    let url = format!("{}/v1/hood/profiles?email=eq:a%40b.co", sb.hood_url());
    let none = call("GET", &url, &[], None).await;
    assert_hood_error(&none, 401);
    assert_eq!(none.header("x-ratelimit-limit"), None);
    let wrong = call(
        "GET",
        &url,
        &[("authorization", "Bearer nope".to_owned())],
        None,
    )
    .await;
    assert_hood_error(&wrong, 401);
    let raw_token = call(
        "GET",
        &url,
        &[(
            "authorization",
            sb.credentials().hood_token.expose_secret().to_owned(),
        )],
        None,
    )
    .await;
    assert_hood_error(&raw_token, 401);
    assert_eq!(rules(&sb), vec![Rule::Auth; 3]);
    let ok = call("GET", &url, &hood_auth(&sb), None).await;
    assert_eq!((ok.status, ok.body.clone()), (200, json!([])));
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_create_enforces_json_identity_known_fields_and_formats() {
    let sb = start().await;
    let url = format!("{}/v1/hood/profiles", sb.hood_url());
    let cases: Vec<(Body, u16, Rule)> = vec![
        (
            Some(("text/plain", json!({"email": "a@b.co"}).to_string())),
            415,
            Rule::ContentType,
        ),
        (
            Some(("", json!({"email": "a@b.co"}).to_string())),
            415,
            Rule::ContentType,
        ),
        (
            Some(("application/json", "{not json".into())),
            400,
            Rule::MalformedJson,
        ),
        (json_body(json!(["a@b.co"])), 400, Rule::MalformedJson),
        (
            json_body(json!({"full_name": "No Contact"})),
            400,
            Rule::MissingField,
        ),
        (
            json_body(json!({"email": "a@b.co", "lists": ["1"]})),
            400,
            Rule::UnknownField,
        ),
        (
            json_body(json!({"mobile_phone_number": "+49 658 245684"})),
            400,
            Rule::PhoneFormat,
        ),
        (
            json_body(json!({"mobile_phone_number": "0049658245684"})),
            400,
            Rule::PhoneFormat,
        ),
        (
            json_body(json!({"email": "not-an-address"})),
            400,
            Rule::EmailFormat,
        ),
        (json_body(json!({"email": 42})), 400, Rule::FieldType),
    ];
    let n = cases.len();
    for (body, status, rule) in cases {
        let a = call("POST", &url, &hood_auth(&sb), body).await;
        assert_hood_error(&a, status);
        assert_eq!(sb.violations().last().map(|v| v.rule), Some(rule));
    }
    assert_eq!(sb.violation_count(), n);
    assert!(sb.hood_profiles().is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_create_answers_201_with_the_profile_and_the_list_filter_finds_it() {
    let sb = start().await;
    let base = sb.hood_url();
    let created = call(
        "POST",
        &format!("{base}/v1/hood/profiles"),
        &hood_auth(&sb),
        json_body(json!({"email": "John+Doe@example.com", "mobile_phone_number": "+49658245684", "full_name": "John Doe"})),
    )
    .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["id"], json!("2000001"));
    assert_eq!(created.body["country"], json!("DE"));
    assert_eq!(created.body["full_name"], json!("John Doe"));
    assert_eq!(created.body["custom_properties"], json!({}));
    let find = |q: &'static str| {
        let url = format!("{base}/v1/hood/profiles?{q}");
        let auth = hood_auth(&sb);
        async move { call("GET", &url, &auth, None).await }
    };
    for q in [
        "email=eq:john%2Bdoe%40example.com",
        "mobile_phone_number=eq:%2B49658245684",
        "id=in:7,2000001",
    ] {
        let a = find(q).await;
        assert_eq!(a.status, 200, "{q}");
        assert_eq!(a.body.as_array().map(Vec::len), Some(1), "{q}");
        assert_eq!(a.body[0]["id"], json!("2000001"), "{q}");
    }
    // An unencoded `+` is a space: the number is not found.
    assert_eq!(
        find("mobile_phone_number=eq:+49658245684").await.body,
        json!([])
    );
    assert_eq!(find("email=eq:other%40example.com").await.body, json!([]));
    for bad in [
        "email=john%40example.com",
        "email=like:john",
        "nickname=eq:x",
    ] {
        let a = find(bad).await;
        assert_hood_error(&a, 400);
    }
    assert_eq!(rules(&sb), vec![Rule::Query; 3]);
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_patch_takes_only_updatable_fields_and_defined_properties() {
    let sb = start().await;
    let base = sb.hood_url();
    let auth = hood_auth(&sb);
    call(
        "POST",
        &format!("{base}/v1/hood/profiles"),
        &auth,
        json_body(json!({"email": "ann@example.com"})),
    )
    .await;
    let url = format!("{base}/v1/hood/profiles/2000001");
    let cases: Vec<(Value, u16, Option<Rule>)> = vec![
        (json!({}), 400, Some(Rule::EmptyUpdate)),
        (
            json!({"custom_properties": {}}),
            400,
            Some(Rule::EmptyUpdate),
        ),
        (json!({"country": "US"}), 400, Some(Rule::UnknownField)),
        (json!({"id": "2000002"}), 400, Some(Rule::UnknownField)),
        (
            json!({"custom_properties": {"plan": "pro"}}),
            400,
            Some(Rule::UndefinedProperty),
        ),
        (
            json!({"mobile_phone_number": "4155552671"}),
            400,
            Some(Rule::PhoneFormat),
        ),
        (json!({"lists": "1000102"}), 400, Some(Rule::FieldType)),
    ];
    for (body, status, rule) in &cases {
        let a = call("PATCH", &url, &auth, json_body(body.clone())).await;
        assert_hood_error(&a, *status);
        assert_eq!(sb.violations().last().map(|v| v.rule), *rule, "{body}");
    }
    let unknown = call(
        "PATCH",
        &format!("{base}/v1/hood/profiles/999"),
        &auth,
        json_body(json!({"full_name": "X"})),
    )
    .await;
    assert_hood_error(&unknown, 404);
    assert_eq!(sb.violation_count(), cases.len(), "a 404 is no violation");

    let defined = call(
        "POST",
        &format!("{base}/v1/hood/profile-properties"),
        &auth,
        json_body(json!({"label": "plan", "data_type": "text", "example": "pro",
            "description": "Plan", "export_alias": "plan", "pi_data": 0, "importable": 1, "exportable": 1})),
    )
    .await;
    assert_eq!(defined.status, 201);
    let number = call(
        "PATCH",
        &url,
        &auth,
        json_body(json!({"custom_properties": {"plan": 3}})),
    )
    .await;
    assert_hood_error(&number, 400);
    let ok = call(
        "PATCH",
        &url,
        &auth,
        json_body(
            json!({"custom_properties": {"plan": "pro"}, "lists": ["1000102"],
            "comment": "c", "organization_id": "1000", "mobile_phone_number": "+442079460958"}),
        ),
    )
    .await;
    assert_eq!((ok.status, ok.body.clone()), (204, json!("")));
    let p = &sb.hood_profiles()[0];
    assert_eq!(
        p.custom_properties.get("plan").map(String::as_str),
        Some("pro")
    );
    assert_eq!(p.lists, vec!["1000102"]);
    assert_eq!(p.organization_id.as_deref(), Some("1000"));
    assert_eq!(p.country.as_deref(), Some("GB"));
    assert_eq!(p.email.as_deref(), Some("ann@example.com"), "untouched");
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_profile_properties_are_validated_and_labels_are_unique() {
    let sb = start().await;
    let url = format!("{}/v1/hood/profile-properties", sb.hood_url());
    let auth = hood_auth(&sb);
    let body = json!({"label": "my_region", "data_type": "text", "example": "northern_europe",
        "description": "Region", "export_alias": "region_name", "pi_data": 1, "importable": 1, "exportable": 1});
    let created = call("POST", &url, &auth, json_body(body.clone())).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.body["id"], json!("1000101"));
    assert_eq!(created.body["label"], json!("my_region"));
    assert_eq!(created.body["target"], json!("my_region"));
    assert_eq!(created.body["import_aliases"], json!(["region_name"]));
    assert_eq!(created.body["pi_data"], json!(1));

    let duplicate = call("POST", &url, &auth, json_body(body.clone())).await;
    assert_hood_error(&duplicate, 400);
    assert_eq!(
        sb.violation_count(),
        0,
        "a duplicate label is a state answer"
    );

    let mut bad_flag = body.clone();
    bad_flag["label"] = json!("other");
    bad_flag["pi_data"] = json!(2);
    let mut no_label = body.clone();
    no_label.as_object_mut().unwrap().remove("label");
    let mut extra = body.clone();
    extra["label"] = json!("third");
    extra["target"] = json!("third");
    let mut bad_type = body.clone();
    bad_type["label"] = json!("fourth");
    bad_type["data_type"] = json!("json");
    for (b, rule) in [
        (bad_flag, Rule::FieldType),
        (no_label, Rule::MissingField),
        (extra, Rule::UnknownField),
        (bad_type, Rule::FieldType),
    ] {
        let a = call("POST", &url, &auth, json_body(b)).await;
        assert_hood_error(&a, 400);
        assert_eq!(sb.violations().last().map(|v| v.rule), Some(rule));
    }
    let listed = call("GET", &url, &auth, None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));
    assert_eq!(listed.body[0]["label"], json!("my_region"));
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_rate_limit_a_burst_of_12_gets_429_for_the_11th_and_12th() {
    let (options, clock) = manual();
    let sb = Sandbox::start_with(options).await.unwrap();
    let url = format!("{}/v1/hood/profile-properties", sb.hood_url());
    let auth = hood_auth(&sb);
    let mut answers = Vec::new();
    for _ in 0..12 {
        answers.push(call("GET", &url, &auth, None).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [[200; 10].as_slice(), &[429, 429]].concat());
    let remaining: Vec<&str> = answers
        .iter()
        .map(|a| a.header("x-ratelimit-remaining").unwrap())
        .collect();
    assert_eq!(
        remaining,
        vec!["9", "8", "7", "6", "5", "4", "3", "2", "1", "0", "0", "0"]
    );
    for a in &answers {
        assert_eq!(a.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(a.header("x-ratelimit-reset"), Some("1"));
    }
    for a in &answers[10..] {
        assert_hood_error(a, 429);
        assert_eq!(a.header("retry-after"), Some("1"));
    }
    assert_eq!(answers[9].header("retry-after"), None);
    assert_eq!(sb.rate_limit_violations(), 2);
    let v = sb.violations();
    assert_eq!(
        (v[0].seq, v[1].seq, v[0].vendor, v[0].status),
        (10, 11, Vendor::Hood, 429)
    );
    // The limit is per account and shared by every endpoint: a POST is refused too.
    let post = call(
        "POST",
        &format!("{}/v1/hood/profiles", sb.hood_url()),
        &auth,
        json_body(json!({"email": "a@b.co"})),
    )
    .await;
    assert_eq!(post.status, 429);
    assert!(sb.hood_profiles().is_empty());
    // The next second admits again.
    clock.advance(TimeDelta::seconds(1));
    let again = call("GET", &url, &auth, None).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.header("x-ratelimit-remaining"), Some("9"));
    assert_eq!(sb.rate_limit_violations(), 3);
    sb.shutdown().await;
}

#[tokio::test]
async fn hood_rate_limit_steady_150_per_minute() {
    let (options, clock) = manual();
    let sb = Sandbox::start_with(options).await.unwrap();
    let url = format!("{}/v1/hood/profile-properties", sb.hood_url());
    let auth = hood_auth(&sb);
    let mut last = None;
    for _ in 0..15 {
        for _ in 0..10 {
            last = Some(call("GET", &url, &auth, None).await);
        }
        clock.advance(TimeDelta::seconds(1));
    }
    let last = last.unwrap();
    assert_eq!(last.status, 200);
    assert_eq!(last.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(sb.violation_count(), 0);
    // 15.25 s into the minute: the 151st waits for the minute to end.
    let refused = call("GET", &url, &auth, None).await;
    assert_hood_error(&refused, 429);
    assert_eq!(refused.header("retry-after"), Some("45"));
    assert_eq!(refused.header("x-ratelimit-limit"), Some("150"));
    assert_eq!(refused.header("x-ratelimit-reset"), Some("45"));
    assert_eq!(sb.rate_limit_violations(), 1);
    clock.advance(TimeDelta::seconds(45));
    assert_eq!(call("GET", &url, &auth, None).await.status, 200);
    sb.shutdown().await;
}

// -------------------------------------------------------------------- Channel.io ----

#[tokio::test]
async fn channelio_refuses_bad_credentials_and_non_json_bodies() {
    let sb = start().await;
    let url = format!("{}/open/v5/users/@m1", sb.channelio_url());
    let key_only = vec![channel_auth(&sb).remove(0)];
    let a = call("PUT", &url, &key_only, json_body(json!({}))).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["status"], json!(401));
    assert!(a.body["errors"][0]["message"].is_string());
    let mut wrong = channel_auth(&sb);
    wrong[1].1.push('x');
    assert_eq!(
        call("PUT", &url, &wrong, json_body(json!({}))).await.status,
        401
    );
    let text = call(
        "PUT",
        &url,
        &channel_auth(&sb),
        Some(("text/plain", "{}".into())),
    )
    .await;
    assert_eq!(text.status, 415);
    assert_eq!(rules(&sb), vec![Rule::Auth, Rule::Auth, Rule::ContentType]);
    assert!(sb.channelio_users().is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn channelio_body_rules_bite() {
    let sb = start().await;
    let url = format!("{}/open/v5/users/@m1", sb.channelio_url());
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    let cases = vec![
        (json!({"name": "x"}), Rule::UnknownField),
        (
            json!({"profile": {"mobileNumber": "+1 415 555 2671"}}),
            Rule::PhoneFormat,
        ),
        (
            json!({"profileOnce": {"mobileNumber": "4155552671"}}),
            Rule::PhoneFormat,
        ),
        (json!({"profile": {"email": "nope"}}), Rule::EmailFormat),
        (json!({"profile": {"nested": {"a": 1}}}), Rule::FieldType),
        (json!({"profile": "x"}), Rule::FieldType),
        (json!({"tags": too_many}), Rule::Tags),
        (json!({"tags": ["a.b"]}), Rule::Tags),
        (json!({"tags": ["a$b"]}), Rule::Tags),
        (json!({"tags": ["a/b"]}), Rule::Tags),
        (json!({"tags": ["a b"]}), Rule::Tags),
        (json!({"tags": "a"}), Rule::FieldType),
        (json!({"unsubscribeEmail": "yes"}), Rule::FieldType),
    ];
    for (body, rule) in &cases {
        let a = call("PUT", &url, &channel_auth(&sb), json_body(body.clone())).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.body["type"], json!("BadRequest"));
        assert_eq!(
            sb.violations().last().map(|v| v.rule),
            Some(*rule),
            "{body}"
        );
    }
    assert_eq!(sb.violation_count(), cases.len());
    let twenty: Vec<String> = (0..20).map(|i| format!("t_{i}")).collect();
    let ok = call(
        "PUT",
        &url,
        &channel_auth(&sb),
        json_body(json!({"tags": twenty})),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(sb.channelio_users()[0].tags.len(), 20);
    sb.shutdown().await;
}

#[tokio::test]
async fn channelio_upsert_patch_get_and_profile_once() {
    let sb = start().await;
    let base = sb.channelio_url();
    let auth = channel_auth(&sb);
    // A member id with `/` and `@` travels percent-encoded and is stored decoded.
    let member_url = format!("{base}/open/v5/users/@email%3Aa%2Fb%40example.com");
    let first = call(
        "PUT",
        &member_url,
        &auth,
        json_body(
            json!({"profile": {"name": "A", "mobileNumber": "+14155552671"},
            "profileOnce": {"utmSource": "ads"}, "unsubscribeTexting": true}),
        ),
    )
    .await;
    assert_eq!(first.status, 200);
    let id = first.body["user"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20);
    assert_eq!(
        first.body["user"]["memberId"],
        json!("email:a/b@example.com")
    );
    assert_eq!(first.body["user"]["mobileNumber"], json!("+14155552671"));
    assert!(first.body.as_object().unwrap().contains_key("online"));
    let limit: u64 = first.header("x-ratelimit-limit").unwrap().parse().unwrap();
    let reset: u64 = first.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert_eq!(limit, 1000);
    assert_eq!(first.header("x-ratelimit-remaining"), Some("999"));
    assert_eq!(reset, 1_795_186_860, "epoch seconds of the minute's end");

    let second = call(
        "PUT",
        &member_url,
        &auth,
        json_body(json!({"profileOnce": {"utmSource": "newsletter", "plan": "pro"}})),
    )
    .await;
    assert_eq!(second.body["user"]["id"], json!(id));
    assert_eq!(second.body["user"]["profile"]["utmSource"], json!("ads"));
    assert_eq!(second.body["user"]["profile"]["plan"], json!("pro"));

    let patched = call(
        "PATCH",
        &format!("{base}/open/v5/users/{id}"),
        &auth,
        json_body(json!({"tags": ["vip"], "unsubscribeEmail": true})),
    )
    .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["user"]["tags"], json!(["vip"]));

    let unknown = call(
        "PATCH",
        &format!("{base}/open/v5/users/nobody"),
        &auth,
        json_body(json!({"tags": []})),
    )
    .await;
    assert_eq!(unknown.status, 404);
    let missing = call("GET", &format!("{base}/open/v5/users/@nobody"), &auth, None).await;
    assert_eq!(missing.status, 404);
    let put_by_id = call(
        "PUT",
        &format!("{base}/open/v5/users/{id}"),
        &auth,
        json_body(json!({})),
    )
    .await;
    assert_eq!(put_by_id.status, 405);
    assert_eq!(
        rules(&sb),
        vec![Rule::UnknownEndpoint],
        "404s are no violations"
    );

    // The relay's client reads the member back by its decoded id.
    let client = ChannelClient::new(&sb.channelio_config()).unwrap();
    let got = client
        .get_user_by_member_id("email:a/b@example.com")
        .await
        .unwrap();
    assert_eq!(got.value.map(|u| u.user.id), Some(id));
    assert_eq!(got.rate_limit.limit, Some(1000));
    assert_eq!(client.get_user_by_member_id("x").await.unwrap().value, None);

    let users = sb.channelio_users();
    assert_eq!(users.len(), 1);
    let u = &users[0];
    assert!(u.unsubscribe_email && u.unsubscribe_texting);
    assert_eq!(u.version, 3);
    sb.shutdown().await;
}

// ---------------------------------------------------------------------- Omnivibe ----

#[tokio::test]
async fn omnivibe_refuses_password_fields_and_counts_each() {
    let sb = start().await;
    let url = format!("{}/api/v1/profile", sb.omnivibe_url());
    for field in ["current_password", "password", "password_confirmation"] {
        let mut profile = json!({"name": "Hana Kim"});
        profile[field] = json!("hunter2");
        let a = call(
            "PUT",
            &url,
            &omnivibe_auth(&sb),
            json_body(json!({ "profile": profile })),
        )
        .await;
        assert_eq!(a.status, 400, "{field}");
        assert!(a.body["error"].as_str().unwrap().contains(field));
        assert!(!a.body.to_string().contains("hunter2"));
    }
    assert_eq!(rules(&sb), vec![Rule::PasswordField; 3]);
    assert_eq!(sb.omnivibe_agent().updates, 0);
    assert_eq!(sb.omnivibe_agent().name, "Sandbox Agent");
    sb.shutdown().await;
}

#[tokio::test]
async fn omnivibe_auth_and_body_shape() {
    let sb = start().await;
    let url = format!("{}/api/v1/profile", sb.omnivibe_url());
    let body = json!({"profile": {"name": "Hana Kim", "display_name": "Hana"}});
    let none = call("PUT", &url, &[], json_body(body.clone())).await;
    assert_eq!(
        (none.status, none.body.clone()),
        (401, json!({"error": "Invalid Access Token"}))
    );
    // The Chatwoot token belongs to another user: it may not change the agent.
    let other = call("PUT", &url, &chatwoot_auth(&sb), json_body(body.clone())).await;
    assert_eq!(other.status, 401);
    let cases = vec![
        (json!({"name": "Hana"}), 400, Rule::UnknownField),
        (json!({"profile": {}}), 400, Rule::MissingField),
        (json!({"profile": {"avatar": "x"}}), 400, Rule::UnknownField),
        (json!({"profile": {"name": 7}}), 400, Rule::FieldType),
        (
            json!({"profile": {"email": "nope"}}),
            422,
            Rule::EmailFormat,
        ),
    ];
    for (b, status, rule) in &cases {
        let a = call("PUT", &url, &omnivibe_auth(&sb), json_body(b.clone())).await;
        assert_eq!(a.status, *status, "{b}");
        assert_eq!(sb.violations().last().map(|v| v.rule), Some(*rule), "{b}");
    }
    assert_eq!(sb.violation_count(), 2 + cases.len());
    let text = call(
        "PUT",
        &url,
        &omnivibe_auth(&sb),
        Some(("text/plain", body.to_string())),
    )
    .await;
    assert_eq!(text.status, 415);
    let ok = call("PUT", &url, &omnivibe_auth(&sb), json_body(body)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["id"], json!(1));
    assert_eq!(ok.body["name"], json!("Hana Kim"));
    assert_eq!(ok.body["available_name"], json!("Hana"));
    assert_eq!(ok.body["role"], json!("agent"));
    let shown = call("GET", &url, &omnivibe_auth(&sb), None).await;
    assert_eq!(shown.body["display_name"], json!("Hana"));
    sb.shutdown().await;
}

// ---------------------------------------------------------------------- Chatwoot ----

#[tokio::test]
async fn chatwoot_uniqueness_conflicts_answer_422_and_are_no_violation() {
    let sb = start().await;
    let url = format!("{}/api/v1/accounts/1/contacts", sb.chatwoot_url());
    let auth = chatwoot_auth(&sb);
    let first = call(
        "POST",
        &url,
        &auth,
        json_body(json!({"name": "Ann", "email": "Ann@Example.com", "phone_number": "+14155552671", "identifier": "k1"})),
    )
    .await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body["payload"]["contact"]["email"],
        json!("ann@example.com")
    );
    for (body, message, attribute) in [
        (
            json!({"email": "ANN@example.com"}),
            "Email has already been taken",
            "email",
        ),
        (
            json!({"phone_number": "+14155552671"}),
            "Phone number has already been taken",
            "phone_number",
        ),
        (
            json!({"identifier": "k1"}),
            "Identifier has already been taken",
            "identifier",
        ),
    ] {
        let a = call("POST", &url, &auth, json_body(body)).await;
        assert_eq!(
            (a.status, a.body),
            (422, json!({"message": message, "attributes": [attribute]}))
        );
    }
    let second = call("POST", &url, &auth, json_body(json!({"identifier": "k2"}))).await;
    let id = second.body["payload"]["contact"]["id"].as_u64().unwrap();
    assert_eq!(id, 2);
    let clash = call(
        "PUT",
        &format!("{url}/{id}"),
        &auth,
        json_body(json!({"phone_number": "+14155552671"})),
    )
    .await;
    assert_eq!(clash.status, 422);
    assert_eq!(clash.body["attributes"], json!(["phone_number"]));
    assert_eq!(sb.violation_count(), 0);
    assert_eq!(sb.chatwoot_contacts().len(), 2);
    assert_eq!(sb.chatwoot_contacts()[1].phone_number, None);
    sb.shutdown().await;
}

#[tokio::test]
async fn chatwoot_validation_and_access_rules_bite() {
    let sb = start().await;
    let base = sb.chatwoot_url();
    let auth = chatwoot_auth(&sb);
    let contacts = format!("{base}/api/v1/accounts/1/contacts");
    let other_account = call(
        "POST",
        &format!("{base}/api/v1/accounts/2/contacts"),
        &auth,
        json_body(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (other_account.status, other_account.body),
        (
            401,
            json!({"error": "You are not authorized to access this account"})
        )
    );
    let omni_token = call(
        "POST",
        &contacts,
        &omnivibe_auth(&sb),
        json_body(json!({"name": "x"})),
    )
    .await;
    assert_eq!(omni_token.status, 401);
    let phone = call(
        "POST",
        &contacts,
        &auth,
        json_body(json!({"phone_number": "+4930-901820"})),
    )
    .await;
    assert_eq!(
        (phone.status, phone.body),
        (
            422,
            json!({"message": "Phone number should be in e164 format", "attributes": ["phone_number"]})
        )
    );
    let email = call("POST", &contacts, &auth, json_body(json!({"email": "x@"}))).await;
    assert_eq!(email.status, 422);
    let unknown = call(
        "POST",
        &contacts,
        &auth,
        json_body(json!({"name": "x", "company": "y"})),
    )
    .await;
    assert_eq!(unknown.status, 400);
    let text = call("POST", &contacts, &auth, Some(("text/plain", "{}".into()))).await;
    assert_eq!(text.status, 415);
    let no_q = call("GET", &format!("{contacts}/search"), &auth, None).await;
    assert_eq!(
        (no_q.status, no_q.body),
        (
            422,
            json!({"error": "Specify search string with parameter q"})
        )
    );
    let blank_q = call("GET", &format!("{contacts}/search?q=+"), &auth, None).await;
    assert_eq!(blank_q.status, 422);
    assert_eq!(
        rules(&sb),
        vec![
            Rule::AccountAccess,
            Rule::Auth,
            Rule::PhoneFormat,
            Rule::EmailFormat,
            Rule::UnknownField,
            Rule::ContentType,
            Rule::Query,
            Rule::Query,
        ]
    );
    let missing = call(
        "PUT",
        &format!("{contacts}/99"),
        &auth,
        json_body(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (missing.status, missing.body),
        (404, json!({"error": "Resource could not be found"}))
    );
    assert_eq!(sb.violation_count(), 8, "a 404 is no violation");
    assert!(sb.chatwoot_contacts().is_empty());
    sb.shutdown().await;
}

#[tokio::test]
async fn chatwoot_answers_in_wrapped_shapes_and_merges_attributes() {
    let sb = start().await;
    let contacts = format!("{}/api/v1/accounts/1/contacts", sb.chatwoot_url());
    let auth = chatwoot_auth(&sb);
    let created = call(
        "POST",
        &contacts,
        &auth,
        json_body(json!({"name": "Ann Lee", "email": "ann.lee@example.com",
            "custom_attributes": {"plan": "pro", "utm_source": "ads"}})),
    )
    .await;
    assert_eq!(created.status, 200);
    assert_eq!(created.body["payload"]["contact"]["id"], json!(1));
    assert_eq!(
        created.body["payload"]["contact_inbox"],
        json!({"inbox": null, "source_id": null})
    );
    let updated = call(
        "PUT",
        &format!("{contacts}/1"),
        &auth,
        json_body(json!({"custom_attributes": {"plan": "team"}, "additional_attributes": {"company_name": "Acme"}})),
    )
    .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["payload"]["id"], json!(1));
    assert_eq!(
        updated.body["payload"]["custom_attributes"],
        json!({"plan": "team", "utm_source": "ads"})
    );
    assert_eq!(
        updated.body["payload"]["name"],
        json!("Ann Lee"),
        "untouched"
    );
    let found = call(
        "GET",
        &format!("{contacts}/search?q=ANN.LEE%40example"),
        &auth,
        None,
    )
    .await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body["meta"]["count"], json!(1));
    assert_eq!(found.body["payload"][0]["id"], json!(1));
    let none = call("GET", &format!("{contacts}/search?q=bob"), &auth, None).await;
    assert_eq!(none.body["payload"], json!([]));
    let shown = call("GET", &format!("{contacts}/1"), &auth, None).await;
    assert_eq!(shown.body["payload"]["email"], json!("ann.lee@example.com"));
    // The relay's client parses the same answers.
    let client = ChatwootClient::new(&sb.chatwoot_config()).unwrap();
    let hits = client.search_contacts("ann.lee@example.com").await.unwrap();
    assert_eq!(hits.value.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1]);
    assert!(hits.value[0].matches_exactly("ann.lee@example.com"));
    assert_clean(&sb);
    sb.shutdown().await;
}

// ------------------------------------------------------------------------ general ----

#[tokio::test]
async fn unknown_paths_and_methods_are_violations_in_the_vendor_shape() {
    let sb = start().await;
    let hood_path = call(
        "GET",
        &format!("{}/v1/hood/segments", sb.hood_url()),
        &hood_auth(&sb),
        None,
    )
    .await;
    assert_hood_error(&hood_path, 404);
    let hood_method = call(
        "DELETE",
        &format!("{}/v1/hood/profiles/1", sb.hood_url()),
        &hood_auth(&sb),
        None,
    )
    .await;
    assert_hood_error(&hood_method, 405);
    let channel = call(
        "GET",
        &format!("{}/open/v5/managers", sb.channelio_url()),
        &channel_auth(&sb),
        None,
    )
    .await;
    assert_eq!(channel.status, 404);
    let omni = call(
        "POST",
        &format!("{}/api/v1/profile", sb.omnivibe_url()),
        &omnivibe_auth(&sb),
        None,
    )
    .await;
    assert_eq!(omni.status, 405);
    assert_eq!(rules(&sb), vec![Rule::UnknownEndpoint; 4]);
    let vendors: Vec<Vendor> = sb.violations().iter().map(|v| v.vendor).collect();
    assert_eq!(
        vendors,
        vec![
            Vendor::Hood,
            Vendor::Hood,
            Vendor::Channelio,
            Vendor::Omnivibe
        ]
    );
    // Outside every vendor's base path: not found, not recorded.
    let outside = call("GET", &format!("http://{}/nowhere", sb.addr()), &[], None).await;
    assert_eq!(outside.status, 404);
    assert_eq!(sb.requests().len(), 4);
    sb.shutdown().await;
}

#[tokio::test]
async fn recordings_hold_the_request_but_debug_output_shows_no_personal_data() {
    let sb = start_frozen().await;
    assert_no_failures(&Relay::new(&sb).deliver_all("typeform").await);
    let search = sb.requests_of(Vendor::Chatwoot).into_iter().next().unwrap();
    assert_eq!(search.path, "/api/v1/accounts/1/contacts/search");
    assert_eq!(search.query.as_deref(), Some("q=ann.lee%40example.com"));
    assert_eq!(search.at, t0());
    let create = sb.requests_of(Vendor::Chatwoot).into_iter().nth(1).unwrap();
    assert_eq!(
        create.body.as_ref().unwrap()["email"],
        json!("ann.lee@example.com")
    );

    let c = sb.credentials();
    let secrets = [
        c.hood_token.expose_secret().to_owned(),
        c.channel_access_key.expose_secret().to_owned(),
        c.channel_access_secret.expose_secret().to_owned(),
        c.omnivibe_token.expose_secret().to_owned(),
        c.chatwoot_token.expose_secret().to_owned(),
    ];
    let shown = format!(
        "{sb:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        sb.requests(),
        sb.violations(),
        sb.hood_profiles(),
        sb.channelio_users(),
        sb.chatwoot_contacts(),
        sb.omnivibe_agent(),
        sb.credentials(),
    );
    for private in [
        "ann.lee",
        "example.com",
        "4155552671",
        "Ann Lee",
        "Acme",
        "newsletter",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain(secrets)
    {
        assert!(!shown.contains(&private), "Debug shows a private value");
    }
    assert!(shown.contains("requests: 10"), "{shown}");
    sb.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_the_server() {
    let sb = Sandbox::start().await.unwrap();
    let url = format!("{}/v1/hood/profiles", sb.hood_url());
    assert_eq!(call("GET", &url, &hood_auth(&sb), None).await.status, 200);
    sb.shutdown().await;
    let err = reqwest::Client::new().get(&url).send().await.unwrap_err();
    assert!(err.is_connect(), "{err}");
}
