//! Stateful wiremock vendors for the reliability tests: each request is checked (auth,
//! content type, required fields) and applied to in-memory state — so a create whose answer
//! was lost (a timeout) is found by the retry's lookup, as at the real vendor — and faults
//! can be injected: 500s, answers slower than the client's timeout (applied, then late),
//! and bursts of 429 with `Retry-After`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value, json};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Credentials the stateful vendors accept.
pub const HOOD_TOKEN: &str = "hood-test-token";
pub const CHANNEL_KEY: &str = "ch-key";
pub const CHANNEL_SECRET: &str = "ch-secret";
pub const CHATWOOT_TOKEN: &str = "cw-token";
pub const CHATWOOT_ACCOUNT: u64 = 1;

/// Faults to inject, per vendor request, decided by a deterministic sequence.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Percent of requests answered 500 without being applied.
    pub fail_percent: u64,
    /// Percent of requests applied but answered after `slow_by` (past the client's timeout).
    pub slow_percent: u64,
    pub slow_by: Duration,
    /// Every `throttle_every` requests, a burst of `throttle_burst` answered 429.
    pub throttle_every: u64,
    pub throttle_burst: u64,
    /// Slow down only the requests that create a record (Hood profile, Chatwoot contact).
    pub slow_creates_only: bool,
    /// Refuse every request with this status (e.g. 400 or 401), applying nothing; 0: never.
    pub refuse_status: u16,
}

/// What the vendors hold and what they saw.
#[derive(Debug, Default)]
pub struct World {
    pub hood_profiles: BTreeMap<String, Map<String, Value>>,
    pub hood_properties: Vec<String>,
    pub hood_creates: u64,
    pub channel_users: BTreeMap<String, Map<String, Value>>,
    pub channel_upserts: u64,
    pub chatwoot_contacts: BTreeMap<u64, Map<String, Value>>,
    pub chatwoot_creates: u64,
    pub injected_500: u64,
    pub injected_slow: u64,
    pub injected_429: u64,
    pub requests: u64,
}

impl World {
    /// The Channel.io user whose profile holds this e-mail. Member ids are person ids,
    /// which ingest makes up, so tests find a user by what the sender sent.
    pub fn channel_user_by_email(&self, email: &str) -> Option<&Map<String, Value>> {
        self.channel_users
            .values()
            .find(|u| u.get("email").and_then(Value::as_str) == Some(email))
    }
}

/// The three stateful vendors.
pub struct StatefulVendors {
    pub hood: MockServer,
    pub channel: MockServer,
    pub chatwoot: MockServer,
    world: Arc<Mutex<World>>,
    faults: Arc<Mutex<Faults>>,
}

impl StatefulVendors {
    pub async fn start(faults: Faults) -> Self {
        let world = Arc::new(Mutex::new(World::default()));
        let faults = Arc::new(Mutex::new(faults));
        let counter = Arc::new(AtomicU64::new(0));
        let responder = |kind| Vendor {
            kind,
            world: world.clone(),
            faults: faults.clone(),
            counter: counter.clone(),
        };
        let hood = MockServer::start().await;
        Mock::given(any())
            .respond_with(responder(Kind::Hood))
            .mount(&hood)
            .await;
        let channel = MockServer::start().await;
        Mock::given(any())
            .respond_with(responder(Kind::Channel))
            .mount(&channel)
            .await;
        let chatwoot = MockServer::start().await;
        Mock::given(any())
            .respond_with(responder(Kind::Chatwoot))
            .mount(&chatwoot)
            .await;
        StatefulVendors {
            hood,
            channel,
            chatwoot,
            world,
            faults,
        }
    }

    /// Changes the faults from the next request on.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(PoisonError::into_inner) = faults;
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Hood,
    Channel,
    Chatwoot,
}

struct Vendor {
    kind: Kind,
    world: Arc<Mutex<World>>,
    faults: Arc<Mutex<Faults>>,
    counter: Arc<AtomicU64>,
}

fn error(status: u16, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(
        json!({"code": status, "title": "error", "message": message, "trace_id": "t-1"}),
    )
}

impl Respond for Vendor {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let mut world = self.world.lock().unwrap_or_else(PoisonError::into_inner);
        world.requests += 1;
        if let Some(refused) = check_auth(self.kind, request) {
            return refused;
        }
        let f = *self.faults.lock().unwrap_or_else(PoisonError::into_inner);
        if f.refuse_status != 0 {
            return error(f.refuse_status, "refused by the test");
        }
        if f.throttle_every > 0 && n % f.throttle_every < f.throttle_burst {
            world.injected_429 += 1;
            return ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"code": 429, "message": "Too many requests"}));
        }
        // A deterministic, evenly spread number in 0..100 per request.
        let roll = (n.wrapping_mul(2_654_435_761) ^ (n >> 3)) % 100;
        if roll < f.fail_percent {
            world.injected_500 += 1;
            return error(500, "Internal server error.");
        }
        let creates = r_is_create(request);
        let slow = roll < f.fail_percent + f.slow_percent && (creates || !f.slow_creates_only);
        let answer = match self.kind {
            Kind::Hood => hood(&mut world, request),
            Kind::Channel => channel(&mut world, request),
            Kind::Chatwoot => chatwoot(&mut world, request),
        };
        if slow {
            world.injected_slow += 1;
            answer.set_delay(f.slow_by)
        } else {
            answer
        }
    }
}

/// A request creating a vendor record.
fn r_is_create(r: &Request) -> bool {
    r.method.as_str() == "POST"
        && (r.url.path() == "/v1/hood/profiles" || r.url.path().ends_with("/contacts"))
}

fn check_auth(kind: Kind, r: &Request) -> Option<ResponseTemplate> {
    let header = |name: &str| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let ok = match kind {
        Kind::Hood => header("authorization") == format!("Bearer {HOOD_TOKEN}"),
        Kind::Channel => {
            header("x-access-key") == CHANNEL_KEY && header("x-access-secret") == CHANNEL_SECRET
        }
        Kind::Chatwoot => header("api_access_token") == CHATWOOT_TOKEN,
    };
    if !ok {
        return Some(error(401, "unauthorised"));
    }
    if !r.body.is_empty() && !header("content-type").starts_with("application/json") {
        return Some(error(415, "application/json only"));
    }
    None
}

fn body(r: &Request) -> Map<String, Value> {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

fn query(r: &Request, name: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn hood(world: &mut World, r: &Request) -> ResponseTemplate {
    let path = r.url.path().to_string();
    match (r.method.as_str(), path.as_str()) {
        ("GET", "/v1/hood/profile-properties") => {
            let list: Vec<Value> = world
                .hood_properties
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"id": (i + 1).to_string(), "label": l}))
                .collect();
            ResponseTemplate::new(200).set_body_json(list)
        }
        ("POST", "/v1/hood/profile-properties") => {
            let label = body(r)
                .get("label")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if label.is_empty() || world.hood_properties.contains(&label) {
                return error(400, "The request is not valid.");
            }
            world.hood_properties.push(label.clone());
            ResponseTemplate::new(201).set_body_json(json!({"id": world.hood_properties.len().to_string(), "label": label, "data_type": "text"}))
        }
        ("GET", "/v1/hood/profiles") => {
            // `field=eq:v` or `field=in:v1,v2` (Hood's filter operators).
            let filter = |field: &str| -> Option<Vec<String>> {
                let v = query(r, field)?;
                match v.split_once(':') {
                    Some(("eq", one)) => Some(vec![one.to_string()]),
                    Some(("in", many)) => Some(many.split(',').map(str::to_string).collect()),
                    _ => None,
                }
            };
            let found: Vec<Value> = world
                .hood_profiles
                .iter()
                .filter(|(_, p)| {
                    ["email", "mobile_phone_number"].iter().any(|f| {
                        filter(f).is_some_and(|vs| {
                            vs.iter()
                                .any(|v| p.get(*f).and_then(Value::as_str) == Some(v.as_str()))
                        })
                    })
                })
                .map(|(id, p)| {
                    let mut p = p.clone();
                    p.insert("id".into(), json!(id));
                    Value::Object(p)
                })
                .collect();
            ResponseTemplate::new(200).set_body_json(found)
        }
        ("POST", "/v1/hood/profiles") => {
            let b = body(r);
            if b.get("email").is_none() && b.get("mobile_phone_number").is_none() {
                return error(400, "The request body is not valid.");
            }
            world.hood_creates += 1;
            let id = (1_000_000 + world.hood_creates).to_string();
            world.hood_profiles.insert(id.clone(), b.clone());
            let mut stored = b;
            stored.insert("id".into(), json!(id));
            ResponseTemplate::new(201).set_body_json(Value::Object(stored))
        }
        ("PATCH", p) if p.starts_with("/v1/hood/profiles/") => {
            let id = p.trim_start_matches("/v1/hood/profiles/").to_string();
            let b = body(r);
            if b.is_empty() {
                return error(400, "At least one updatable field is required.");
            }
            let Some(profile) = world.hood_profiles.get_mut(&id) else {
                return error(404, "Not found.");
            };
            for (k, v) in b {
                profile.insert(k, v);
            }
            ResponseTemplate::new(204)
        }
        _ => error(404, "Not found."),
    }
}

fn channel(world: &mut World, r: &Request) -> ResponseTemplate {
    let path = r.url.path().to_string();
    let Some(member) = path.strip_prefix("/open/v5/users/@") else {
        return error(404, "not found");
    };
    let member = percent_encoding::percent_decode_str(member)
        .decode_utf8_lossy()
        .into_owned();
    if r.method.as_str() != "PUT" {
        return error(405, "method not allowed");
    }
    let b = body(r);
    world.channel_upserts += 1;
    let user = world.channel_users.entry(member.clone()).or_default();
    if let Some(Value::Object(profile)) = b.get("profile") {
        for (k, v) in profile {
            user.insert(k.clone(), v.clone());
        }
    }
    if let Some(Value::Object(once)) = b.get("profileOnce") {
        for (k, v) in once {
            user.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    ResponseTemplate::new(200).set_body_json(
        json!({"user": {"id": format!("u-{member}"), "memberId": member}, "online": null}),
    )
}

fn chatwoot(world: &mut World, r: &Request) -> ResponseTemplate {
    let base = format!("/api/v1/accounts/{CHATWOOT_ACCOUNT}/contacts");
    let path = r.url.path().to_string();
    let unique = ["email", "phone_number", "identifier"];
    let contact_json = |id: u64, c: &Map<String, Value>| {
        let mut c = c.clone();
        c.insert("id".into(), json!(id));
        Value::Object(c)
    };
    match (r.method.as_str(), path.strip_prefix(&base)) {
        ("GET", Some("/search")) => {
            let q = query(r, "q").unwrap_or_default();
            let found: Vec<Value> = world
                .chatwoot_contacts
                .iter()
                .filter(|(_, c)| {
                    unique.iter().any(|f| {
                        c.get(*f)
                            .and_then(Value::as_str)
                            .is_some_and(|v| v.contains(q.as_str()))
                    })
                })
                .map(|(id, c)| contact_json(*id, c))
                .collect();
            ResponseTemplate::new(200)
                .set_body_json(json!({"meta": {"count": found.len()}, "payload": found}))
        }
        ("POST", Some("")) => {
            let b = body(r);
            let clash = unique.iter().any(|f| {
                b.get(*f).is_some_and(|v| {
                    world
                        .chatwoot_contacts
                        .values()
                        .any(|c| c.get(*f) == Some(v))
                })
            });
            if clash {
                return ResponseTemplate::new(422).set_body_json(
                    json!({"message": "Email has already been taken", "attributes": ["email"]}),
                );
            }
            world.chatwoot_creates += 1;
            let id = world.chatwoot_creates;
            world.chatwoot_contacts.insert(id, b.clone());
            ResponseTemplate::new(200).set_body_json(
                json!({"payload": {"contact": contact_json(id, &b), "contact_inbox": null}}),
            )
        }
        ("PUT", Some(rest)) => {
            let Some(id) = rest.trim_start_matches('/').parse::<u64>().ok() else {
                return error(404, "not found");
            };
            let b = body(r);
            let Some(contact) = world.chatwoot_contacts.get_mut(&id) else {
                return error(404, "not found");
            };
            for (k, v) in b {
                contact.insert(k, v);
            }
            let c = contact.clone();
            ResponseTemplate::new(200).set_body_json(json!({"payload": contact_json(id, &c)}))
        }
        _ => error(404, "not found"),
    }
}
