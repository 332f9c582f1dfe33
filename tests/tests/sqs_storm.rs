//! Issue 15, point 2: the pipeline with production queue semantics (`relay_tests::
//! sqs_pipeline`) — signed webhooks through the real ingest into moto SQS created with the
//! template's queue settings, concurrent pollers acting as the event source mapping around
//! the real sync-worker handler, DynamoDB Local, and the stateful Hood, Channel.io and
//! Chatwoot mocks.
//!
//! * A storm of new contacts (realistic e-mails with `+tags` and capitals, mobile numbers
//!   of seven countries in E.164) posted within about ten seconds, with 5% vendor 500s and
//!   2% hangs past the client's timeout: every contact exactly once at each vendor, nothing
//!   dead-lettered, Hood's limits (10 per second and 150 per minute, in sliding windows,
//!   from the mock's arrival times) never broken. Run twice: 500 contacts with Hood's
//!   schedule and limits both scaled by [`SCALE`] (so it takes about a minute, not five),
//!   and 60 contacts with the production schedule against the real limits.
//! * A total vendor outage (every call 503) that outlasts many retry rounds — and so more
//!   receives than the redrive's `maxReceiveCount` — then recovery: nothing lost, nothing
//!   dead-lettered.
//!
//! Drain times and calls per contact are printed (`--no-capture`), never asserted.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]
// The drain times and call counts are this test's report (`--no-capture`).
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::future::join_all;
use relay_shared::assembly::DEFAULT_LIMITS;
use relay_shared::store::{GcraParams, Pacing, Window};
use relay_shared::vendors::Vendor;
use relay_shared::worker::{Counter, RetryPolicy};
use relay_tests::pipeline::test_policy;
use relay_tests::sqs_pipeline::{
    PollCounts, Settings, SqsPipeline, TemplateQueue, max_in_window, post_to,
};
use relay_tests::stateful_vendors::Faults;
use serde_json::{Map, Value, json};

/// The delivery path's settings in `template.yaml`.
fn template_queue() -> TemplateQueue {
    let template: serde_norway::Value =
        serde_norway::from_str(include_str!("../../template.yaml")).unwrap();
    let resources = &template["Resources"];
    let queue = &resources["Queue"]["Properties"];
    let mapping = &resources["SyncWorkerQueueMapping"]["Properties"];
    let number = |v: &serde_norway::Value| v.as_u64().unwrap();
    TemplateQueue {
        visibility: Duration::from_secs(number(&queue["VisibilityTimeout"])),
        max_receives: u32::try_from(number(&queue["RedrivePolicy"]["maxReceiveCount"])).unwrap(),
        batch_size: u16::try_from(number(&mapping["BatchSize"])).unwrap(),
        // `!Ref WorkerBatchingWindowSeconds`: its default.
        batching_window: {
            let serde_norway::Value::Tagged(window) = &mapping["MaximumBatchingWindowInSeconds"]
            else {
                panic!("MaximumBatchingWindowInSeconds is a !Ref")
            };
            assert_eq!(
                (window.tag.to_string().as_str(), window.value.as_str()),
                ("!Ref", Some("WorkerBatchingWindowSeconds"))
            );
            Duration::from_secs(number(
                &template["Parameters"]["WorkerBatchingWindowSeconds"]["Default"],
            ))
        },
        partial_batch_responses: mapping["FunctionResponseTypes"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|t| t.as_str() == Some("ReportBatchItemFailures")),
        max_concurrency: usize::try_from(number(
            &template["Parameters"]["WorkerMaxConcurrency"]["Default"],
        ))
        .unwrap(),
        function_timeout: Duration::from_secs(number(
            &resources["SyncWorkerFunction"]["Properties"]["Timeout"],
        )),
    }
}

/// How much faster than production Hood's schedule and limits run in the large storm.
const SCALE: u32 = 6;

/// Hood's production schedule [`SCALE`] times faster — derived, as in production, from
/// its windows (here [`SCALE`] times shorter) with the production pacing, whose margin for
/// dispatch jitter is not scaled; the other vendors' as in production.
fn scaled_hood(vendor: Vendor) -> GcraParams {
    match vendor {
        Vendor::Hood => {
            let windows = GcraParams::HOOD_WINDOWS.map(|w| Window::new(w.limit, w.per / SCALE));
            GcraParams::from_windows(&windows, Pacing::default()).unwrap()
        }
        other => DEFAULT_LIMITS(other),
    }
}

/// A limiter that is never what a test waits for.
fn fast(_: Vendor) -> GcraParams {
    GcraParams::new(Duration::from_millis(1), 200)
}

/// 5% of vendor calls answered 500, 2% applied but answered after the client gave up.
fn storm_faults() -> Faults {
    Faults {
        fail_percent: 5,
        slow_percent: 2,
        slow_by: Duration::from_millis(1_500),
        ..Faults::default()
    }
}

/// The quick back-offs of [`test_policy`], over a horizon longer than the storm: the
/// horizon counts from a delivery's first failure, and under Hood's schedule a delivery
/// that failed early may wait minutes for its slots (production's horizon is six hours).
fn storm_policy() -> RetryPolicy {
    RetryPolicy {
        horizon: Duration::from_secs(900),
        ..test_policy()
    }
}

/// One new contact as a sender would post it, and what the vendors must hold.
struct NewContact {
    id: String,
    /// As typed: capitals and `+tags`.
    email: String,
    /// As the vendors must hold it (e-mail addresses are compared lower-cased).
    want_email: String,
    phone: String,
    name: String,
}

/// Contact `i`: a mobile number of one of seven countries (E.164, unique by `i`), an
/// e-mail with capitals and a `+tag`, a name in the country's script.
fn new_contact(i: usize) -> NewContact {
    let n = u64::try_from(i).unwrap();
    let (phone, first, last, domain) = match i % 7 {
        0 => (
            format!("+49151{:08}", 20_000_000 + n),
            "Jörg",
            "Müller",
            "Example.DE",
        ),
        1 => (
            format!("+8210{:08}", 20_000_000 + n),
            "민준",
            "김",
            "Example.co.KR",
        ),
        2 => (
            format!("+55119{:08}", 70_000_000 + n),
            "João",
            "Silva",
            "Example.com.BR",
        ),
        3 => (
            format!("+8180{:08}", 12_000_000 + n),
            "花子",
            "佐藤",
            "Example.JP",
        ),
        4 => (
            format!("+4478{:08}", 12_000_000 + n),
            "Oliver",
            "Smith",
            "Example.CO.UK",
        ),
        5 => (
            format!("+3375{:07}", 6_000_000 + n),
            "Chloé",
            "Dubois",
            "Example.FR",
        ),
        _ => (
            format!("+1312{:07}", 2_000_000 + n),
            "Emily",
            "Johnson",
            "Example.COM",
        ),
    };
    let email = format!("Contact.{i}+Signup@{domain}");
    NewContact {
        id: format!("usr_{i}"),
        want_email: email.to_lowercase(),
        email,
        phone,
        name: format!("{first} {last}"),
    }
}

impl NewContact {
    fn event(&self) -> String {
        json!({
            "type": "contact.created",
            "timestamp": Utc::now().to_rfc3339(),
            "data": {
                "id": self.id,
                "email": self.email,
                "phone": self.phone,
                "name": self.name,
                "properties": {"plan": "pro"}
            }
        })
        .to_string()
    }
}

/// Posts the contacts spread evenly over `within`, each as its own task; a 5xx answer is
/// retried with the same `webhook-id` after a second, up to three times, as a Standard
/// Webhooks sender does. Answers the posts that never got a 2xx, and prints the retried
/// answers.
async fn post_all(p: &SqsPipeline, contacts: &[NewContact], within: Duration) -> Vec<String> {
    let spacing = within / u32::try_from(contacts.len()).unwrap();
    let started = tokio::time::Instant::now();
    let answers = join_all(contacts.iter().enumerate().map(|(i, c)| {
        let (app, id, body) = (p.app.clone(), c.id.clone(), c.event());
        let at = started + spacing * u32::try_from(i).unwrap();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let mut answers = Vec::new();
            for _ in 0..4 {
                let status = post_to(app.clone(), &format!("msg_{id}"), &body).await;
                answers.push(status);
                if !status.is_server_error() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (id, answers)
        })
    }))
    .await;
    let mut problems = Vec::new();
    let mut retried = Vec::new();
    for (id, answers) in answers.into_iter().map(Result::unwrap) {
        let last = *answers.last().unwrap();
        if answers.len() > 1 {
            retried.push(format!("{id}: {answers:?}"));
        }
        if !last.is_success() {
            problems.push(format!("{id}: ingest answered {answers:?}"));
        }
    }
    if !retried.is_empty() {
        println!("ingest answers retried by the sender: {retried:?}");
    }
    problems
}

/// Every contact's delivery synced at each vendor, by the worker's counts.
fn all_synced(p: &SqsPipeline, n: usize) -> bool {
    let counts = p.metrics.snapshot();
    [Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot]
        .iter()
        .all(|v| counts.get(&(*v, Counter::Synced)).copied() == Some(u64::try_from(n).unwrap()))
}

fn text<'a>(record: &'a Map<String, Value>, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}

/// Every contact exactly once at each vendor, with its e-mail and phone; no other records;
/// one create per contact.
fn check_records(p: &SqsPipeline, contacts: &[NewContact], problems: &mut Vec<String>) {
    let world = p.vendors.world();
    let n = contacts.len();
    for c in contacts {
        let hood: Vec<_> = world
            .hood_profiles
            .values()
            .filter(|r| text(r, "email") == Some(c.want_email.as_str()))
            .collect();
        match hood.as_slice() {
            [one] if text(one, "mobile_phone_number") == Some(c.phone.as_str()) => {}
            [one] => problems.push(format!(
                "hood: {} has phone {:?}, want {}",
                c.id,
                text(one, "mobile_phone_number"),
                c.phone
            )),
            many => problems.push(format!("hood: {} profiles for {}", many.len(), c.id)),
        }
        match world.channel_user_by_email(&c.want_email) {
            Some(u)
                if text(u, "email") == Some(c.want_email.as_str())
                    && text(u, "mobileNumber") == Some(c.phone.as_str()) => {}
            Some(u) => problems.push(format!(
                "channelio: {} holds {:?} / {:?}",
                c.id,
                text(u, "email"),
                text(u, "mobileNumber")
            )),
            None => problems.push(format!("channelio: no user for {}", c.id)),
        }
        let chatwoot: Vec<_> = world
            .chatwoot_contacts
            .values()
            .filter(|r| text(r, "email") == Some(c.want_email.as_str()))
            .collect();
        match chatwoot.as_slice() {
            [one] if text(one, "phone_number") == Some(c.phone.as_str()) => {}
            [one] => problems.push(format!(
                "chatwoot: {} has phone {:?}, want {}",
                c.id,
                text(one, "phone_number"),
                c.phone
            )),
            many => problems.push(format!("chatwoot: {} contacts for {}", many.len(), c.id)),
        }
    }
    let totals = (
        world.hood_profiles.len(),
        world.channel_users.len(),
        world.chatwoot_contacts.len(),
    );
    if totals != (n, n, n) {
        problems.push(format!(
            "records (hood, channelio, chatwoot) {totals:?}, want {n} each"
        ));
    }
    let creates = (world.hood_creates, world.chatwoot_creates);
    let want = u64::try_from(n).unwrap();
    if creates != (want, want) {
        problems.push(format!(
            "creates (hood, chatwoot) {creates:?}, want {want} each: a duplicate or a missing contact"
        ));
    }
}

/// Nothing dead-lettered, by the queue and by the worker; one synced delivery per contact
/// and vendor.
async fn check_delivery(p: &SqsPipeline, n: usize, problems: &mut Vec<String>) {
    let dead = p.take_dead_letters().await;
    if !dead.is_empty() {
        problems.push(format!(
            "{} messages in the dead-letter queue, e.g. {:?}",
            dead.len(),
            dead.first()
        ));
    }
    let dead_lettered = p.metrics.total(Counter::DeadLettered);
    if dead_lettered != 0 {
        problems.push(format!("the worker dead-lettered {dead_lettered}"));
    }
    let counts = p.metrics.snapshot();
    for vendor in [Vendor::Hood, Vendor::Channelio, Vendor::Chatwoot] {
        let synced = counts.get(&(vendor, Counter::Synced)).copied().unwrap_or(0);
        if synced != u64::try_from(n).unwrap() {
            problems.push(format!("{vendor}: {synced} deliveries synced, want {n}"));
        }
    }
    let errors = PollCounts::get(&p.counts.handler_errors);
    if errors != 0 {
        problems.push(format!("the handler failed {errors} times"));
    }
}

/// Hood's limits in sliding windows over the mock's arrival times, `scale` times faster
/// than production: at most 10 per second and 150 per minute.
fn check_hood_limits(
    p: &SqsPipeline,
    origin: Instant,
    scale: u32,
    problems: &mut Vec<String>,
) -> (usize, usize) {
    let times: Vec<i64> = p
        .hood_arrivals
        .since(origin)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    let scale = i64::from(scale);
    let busiest = (
        max_in_window(&times, 1_000 / scale),
        max_in_window(&times, 60_000 / scale),
    );
    if busiest.0 > 10 || busiest.1 > 150 {
        problems.push(format!(
            "hood: {} requests in a {} ms window (limit 10), {} in a {} ms window (limit 150)",
            busiest.0,
            1_000 / scale,
            busiest.1,
            60_000 / scale
        ));
    }
    busiest
}

fn report(label: &str, p: &SqsPipeline, n: usize, drained: Option<Duration>) {
    let per = |calls: usize| calls as f64 / n as f64;
    let c = &p.counts;
    let world = p.vendors.world();
    println!(
        "== {label}: {n} contacts, drained in {} ==",
        drained.map_or("— (not drained)".into(), |d| format!(
            "{:.1} s",
            d.as_secs_f64()
        ))
    );
    println!(
        "vendor calls per contact: hood {:.2}, channelio {:.2}, chatwoot {:.2}; injected 500s {}, hangs {}",
        per(p.hood_arrivals.len()),
        per(p.channel_arrivals.len()),
        per(p.chatwoot_arrivals.len()),
        world.injected_500,
        world.injected_slow
    );
    println!(
        "pollers: {} invocations, {} received, {} deleted, {} reported as batch item failures, highest receive count {}",
        PollCounts::get(&c.invocations),
        PollCounts::get(&c.received),
        PollCounts::get(&c.deleted),
        PollCounts::get(&c.reported),
        PollCounts::get(&c.max_receive_count)
    );
    let mut hood_calls: BTreeMap<String, usize> = BTreeMap::new();
    for (_, what) in p.hood_arrivals.since(Instant::now()) {
        // Profile ids collapsed: `PATCH /v1/hood/profiles/{id}`.
        let route = match what.rsplit_once('/') {
            Some((head, id)) if id.chars().all(|c| c.is_ascii_digit()) => format!("{head}/{{id}}"),
            _ => what,
        };
        *hood_calls.entry(route).or_default() += 1;
    }
    println!("hood calls: {hood_calls:?}");
    let counts: BTreeMap<String, u64> = p
        .metrics
        .snapshot()
        .into_iter()
        .map(|((v, k), n)| (format!("{v}:{}", k.name()), n))
        .collect();
    println!("worker counts: {counts:?}");
}

async fn storm(label: &str, n: usize, limits: fn(Vendor) -> GcraParams, scale: u32) {
    let template = template_queue();
    assert_eq!(
        template.batch_size, 10,
        "the batch size this test was sized for"
    );
    let p = SqsPipeline::start(
        template,
        Settings {
            faults: storm_faults(),
            limits,
            policy: storm_policy(),
        },
    )
    .await;
    let contacts: Vec<NewContact> = (0..n).map(new_contact).collect();
    let origin = Instant::now();
    let pollers = p.start_pollers(template.max_concurrency);
    let mut problems = post_all(&p, &contacts, Duration::from_secs(10)).await;
    let posted = origin.elapsed();
    println!("posted {n} contacts in {:.1} s", posted.as_secs_f64());
    let (drained, orphans) = pollers
        .drain(Duration::from_secs(600), || all_synced(&p, n))
        .await;
    println!("messages left in flight by no poller when drained: {orphans}");
    report(label, &p, n, drained);
    if drained.is_none() {
        problems.push("the queue did not drain within 600 s".into());
    }
    check_delivery(&p, n, &mut problems).await;
    check_records(&p, &contacts, &mut problems);
    let busiest = check_hood_limits(&p, origin, scale, &mut problems);
    println!(
        "hood busiest windows (×{scale} scale): {} per {} ms, {} per {} ms",
        busiest.0,
        1_000 / scale,
        busiest.1,
        60_000 / scale
    );
    assert!(
        p.vendors.world().injected_500 > 0 && p.vendors.world().injected_slow > 0,
        "the faults were injected"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_500_new_contacts_with_500s_and_hangs_syncs_each_once_within_scaled_hood_limits()
{
    storm("storm, Hood ×6", 500, scaled_hood, SCALE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_60_new_contacts_keeps_to_hoods_production_limits() {
    storm("storm, production Hood limits", 60, DEFAULT_LIMITS, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_outage_of_many_retry_rounds_loses_and_dead_letters_nothing() {
    const N: usize = 20;
    /// The outage lasts at least this long, and then until every contact's Channel.io
    /// delivery has been refused more often than `maxReceiveCount` (how long that takes
    /// depends on the machine's load, so it is counted, not timed)...
    const OUTAGE: Duration = Duration::from_secs(40);
    /// ...but no longer than this.
    const LONGEST_OUTAGE: Duration = Duration::from_secs(240);
    let template = template_queue();
    let p = SqsPipeline::start(
        template,
        Settings {
            faults: Faults {
                refuse_status: 503,
                ..Faults::default()
            },
            limits: fast,
            policy: RetryPolicy {
                // The horizon outlasts the outage many times over; the back-off is
                // production's shape, shortened.
                horizon: Duration::from_secs(600),
                base: Duration::from_millis(500),
                cap: Duration::from_secs(2),
                floor: Duration::from_millis(200),
                ..test_policy()
            },
        },
    )
    .await;
    let contacts: Vec<NewContact> = (0..N).map(new_contact).collect();
    let origin = Instant::now();
    let pollers = p.start_pollers(template.max_concurrency);
    let mut problems = post_all(&p, &contacts, Duration::from_secs(1)).await;
    let max_receives = usize::try_from(template.max_receives).unwrap();
    // Tries per Channel.io user (memberId = the contact's person id, one per contact).
    let tries = |arrivals: &[(i64, String)]| {
        let mut per_user: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, what) in arrivals {
            if what.starts_with("PUT /open/v5/users/@") {
                *per_user.entry(what.clone()).or_default() += 1;
            }
        }
        per_user
    };
    loop {
        let per_user = tries(&p.channel_arrivals.since(origin));
        let enough =
            per_user.len() == contacts.len() && per_user.values().all(|n| *n > max_receives);
        if (enough && origin.elapsed() >= OUTAGE) || origin.elapsed() >= LONGEST_OUTAGE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let refused = (
        p.hood_arrivals.since(origin),
        p.channel_arrivals.since(origin),
        p.chatwoot_arrivals.len(),
    );
    p.vendors.set_faults(Faults::default());
    let recovered = origin.elapsed();
    let synced_during_outage = p.metrics.total(Counter::Synced);
    let (drained, orphans) = pollers
        .drain(Duration::from_secs(120), || all_synced(&p, N))
        .await;
    println!("messages left in flight by no poller when drained: {orphans}");
    println!(
        "outage of {:.1} s: {} hood, {} channelio, {} chatwoot calls refused",
        recovered.as_secs_f64(),
        refused.0.len(),
        refused.1.len(),
        refused.2
    );
    report("outage then recovery", &p, N, drained);
    if let Some(d) = drained {
        println!(
            "drained {:.1} s after the vendors recovered",
            d.saturating_sub(recovered).as_secs_f64()
        );
    } else {
        problems.push("the queue did not drain within 120 s of recovery".into());
    }
    assert_eq!(
        synced_during_outage, 0,
        "nothing synced while every call failed"
    );
    // Each contact's Channel.io delivery was tried (and refused) more often than the
    // redrive allows receives: the retries cost no receives.
    let per_user = tries(&refused.1);
    if per_user.len() != contacts.len() {
        problems.push(format!(
            "channelio: {} users tried in the outage, want one per contact ({})",
            per_user.len(),
            contacts.len()
        ));
    }
    for (user, tries) in &per_user {
        if *tries <= max_receives {
            problems.push(format!(
                "channelio: {user} tried {tries} times in the outage, want more than {max_receives}"
            ));
        }
    }
    check_delivery(&p, N, &mut problems).await;
    check_records(&p, &contacts, &mut problems);
    assert!(
        problems.is_empty(),
        "{} problems:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}
