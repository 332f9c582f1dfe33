//! `relay serve` killed with SIGKILL in the middle of a storm of signed webhooks, then
//! started again on the same data directory: every event it had accepted (answered 202) is
//! delivered, and every contact exists exactly once at each vendor — none missing, none
//! created twice. The senders retry what got no answer, as they do.
//!
//! The relay is the real binary; the vendors are the strict sandbox (Channel.io and
//! Chatwoot, the two whose limits let 150 contacts through in seconds: Hood's documented
//! 150 requests a minute would make this a three-minute test) in this process, recording
//! every request. With `--memory` the deliveries queued at the kill are lost and the
//! checks below fail.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use chrono::Utc;
use http::Method;
use relay_sandbox::Sandbox;
use relay_sandbox::samples::sample;
use relay_shared::ingress::signature::{SignRequest, Verifier};
use relay_shared::mapping::{BUILTIN_MAPPINGS, Mappings};
use relay_shared::vendors::Vendor;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Events in the storm, alternating Typeform and Standard Webhooks.
const EVENTS: usize = 150;
/// The relay is killed once this many events were accepted.
const KILL_AFTER: usize = 50;
/// Requests in flight at once.
const SENDERS: usize = 8;

const TYPEFORM_SECRET: &str = "tf-crash-secret";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn email(i: usize) -> String {
    format!("crash-{i}@example.com")
}

/// One signed delivery: the source, its body and (Standard Webhooks) the `webhook-id`.
struct Event {
    source: &'static str,
    route: &'static str,
    body: String,
    delivery_id: Option<String>,
}

/// The samples, each made a new person: own event id, e-mail, name and contact id, and
/// no phone (the sample's one number would make the contacts share it).
fn event(i: usize) -> Event {
    if i.is_multiple_of(2) {
        let mut body: Value = serde_json::from_str(sample("typeform").unwrap().body).unwrap();
        body["event_id"] = format!("crash-tf-{i}").into();
        body["form_response"]["token"] = format!("crash-token-{i}").into();
        let answers = body["form_response"]["answers"].as_array_mut().unwrap();
        answers.retain(|a| a["type"] != "phone_number");
        for a in answers.iter_mut() {
            if a["type"] == "email" {
                a["email"] = email(i).into();
            }
            if a["field"]["ref"] == "full_name" {
                a["text"] = format!("Crash Person {i}").into();
            }
        }
        Event {
            source: "typeform",
            route: "forms",
            body: body.to_string(),
            delivery_id: None,
        }
    } else {
        let mut body: Value = serde_json::from_str(sample("standard").unwrap().body).unwrap();
        let data = body["data"].as_object_mut().unwrap();
        data.insert("id".into(), format!("usr_crash_{i}").into());
        data.insert("email".into(), email(i).into());
        data.insert("name".into(), format!("Crash Person {i}").into());
        data.remove("phone");
        Event {
            source: "standard",
            route: "crm",
            body: body.to_string(),
            delivery_id: Some(format!("msg_crash_{i}")),
        }
    }
}

/// What a delivery attempt got.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// 202 with `accepted: 1` or `duplicates: 1`.
    Taken,
    /// Another status (`409 event_in_progress` while a claim of the killed run is held).
    Status(u16),
    /// No answer: the relay was gone.
    Unanswered,
}

struct Sender {
    client: reqwest::Client,
    verifiers: BTreeMap<&'static str, Verifier>,
}

impl Sender {
    fn new() -> Sender {
        let m = Mappings::builtin().unwrap();
        let verifier = |source: &str, secret: &str| {
            let scheme = m.source(source).unwrap().signature.clone().unwrap();
            Verifier::new(&scheme, &[SecretString::from(secret)]).unwrap()
        };
        Sender {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            verifiers: BTreeMap::from([
                ("typeform", verifier("typeform", TYPEFORM_SECRET)),
                ("standard", verifier("standard", STANDARD_SECRET)),
            ]),
        }
    }

    async fn send(&self, base: &str, e: &Event) -> Answer {
        let url = format!("{base}/hooks/{}/{}", e.route, e.source);
        let headers = self.verifiers[e.source]
            .sign(&SignRequest {
                method: &Method::POST,
                uri: &url,
                body: e.body.as_bytes(),
                now: Utc::now(),
                delivery_id: e.delivery_id.as_deref(),
            })
            .unwrap();
        let response = self
            .client
            .post(&url)
            .headers(headers)
            .header("content-type", "application/json")
            .body(e.body.clone())
            .send()
            .await;
        let Ok(response) = response else {
            return Answer::Unanswered;
        };
        let status = response.status().as_u16();
        let Ok(body) = response.json::<Value>().await else {
            return Answer::Unanswered;
        };
        let one = |field: &str| body[field].as_u64() == Some(1);
        if status == 202 && (one("accepted") || one("duplicates")) {
            Answer::Taken
        } else {
            Answer::Status(status)
        }
    }
}

/// A running `relay serve` and the lines it printed.
struct Relay {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
    closed: mpsc::Receiver<()>,
}

impl Relay {
    fn start(config: &Path) -> Relay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (banner_tx, banner) = mpsc::channel();
        let (closed_tx, closed) = mpsc::channel();
        let seen = lines.clone();
        std::thread::spawn(move || {
            let mut base = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("relay listening on ") {
                    base = Some(addr.to_string());
                }
                let end_of_banner = line.starts_with("Ctrl-C stops accepting");
                seen.lock().unwrap().push(line);
                if end_of_banner && let Some(base) = base.take() {
                    let _ = banner_tx.send(base);
                }
            }
            let _ = closed_tx.send(());
        });
        let base = banner
            .recv_timeout(Duration::from_secs(60))
            .expect("the relay prints its address and banner");
        Relay {
            child,
            base,
            lines,
            closed,
        }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// SIGKILL: no shutdown, no drain, nothing flushed by the relay.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGINT (Ctrl-C): stop accepting, deliver what is queued, exit. Answers the output.
    fn stop(mut self) -> String {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        let exit = self.child.wait().unwrap();
        let _ = self.closed.recv_timeout(Duration::from_secs(10));
        let output = self.output();
        assert!(exit.success(), "relay serve failed:\n{output}");
        output
    }
}

/// Which vendors a run syncs into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Channel.io and Chatwoot.
    ChannelioChatwoot,
    /// Hood alone (its documented 10/s and 150/min: a small storm).
    Hood,
}

fn write_config(dir: &Path, sandbox: &Sandbox, target: Target) -> std::path::PathBuf {
    // The built-in mappings with only the target's vendors (a delivery for a vendor that is
    // not configured is dead-lettered).
    let all = r#"vendors = ["hood", "channelio", "chatwoot"]"#;
    assert!(BUILTIN_MAPPINGS.contains(all));
    let c = sandbox.credentials();
    let (vendors, sections) = match target {
        Target::ChannelioChatwoot => (
            r#"vendors = ["channelio", "chatwoot"]"#,
            format!(
                r#"[vendors.channelio]
base_url = "{channelio}"
access_key = "{key}"
access_secret = "{secret}"

[vendors.chatwoot]
base_url = "{chatwoot}"
api_access_token = "{token}"
account_id = {account}
"#,
                channelio = sandbox.channelio_url(),
                key = c.channel_access_key.expose_secret(),
                secret = c.channel_access_secret.expose_secret(),
                chatwoot = sandbox.chatwoot_url(),
                token = c.chatwoot_token.expose_secret(),
                account = c.chatwoot_account_id,
            ),
        ),
        Target::Hood => (
            r#"vendors = ["hood"]"#,
            format!(
                "[vendors.hood]\nbase_url = \"{}\"\ntoken = \"{}\"\n",
                sandbox.hood_url(),
                c.hood_token.expose_secret()
            ),
        ),
    };
    std::fs::write(
        dir.join("mappings.toml"),
        BUILTIN_MAPPINGS.replace(all, vendors),
    )
    .unwrap();
    let text = format!(
        r#"mappings = "mappings.toml"

[server]
listen = "127.0.0.1:0"
data_dir = "data"

[sources.typeform]
secrets = ["{TYPEFORM_SECRET}"]

[sources.standard]
secrets = ["{STANDARD_SECRET}"]

{sections}
[worker]
concurrency = 4
drain_timeout_secs = 120
"#
    );
    let file = dir.join("relay.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// Sends every event of `todo` with `SENDERS` at once; answers what each got. `taken`
/// counts the 202s as they come.
async fn storm(
    sender: &Arc<Sender>,
    base: &str,
    events: &Arc<Vec<Event>>,
    todo: Vec<usize>,
    taken: &Arc<AtomicUsize>,
) -> Vec<(usize, Answer)> {
    let todo = Arc::new(todo);
    let next = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (sender, events, todo, next, taken) = (
                sender.clone(),
                events.clone(),
                todo.clone(),
                next.clone(),
                taken.clone(),
            );
            let base = base.to_string();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(&i) = todo.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let answer = sender.send(&base, &events[i]).await;
                    if answer == Answer::Taken {
                        taken.fetch_add(1, Ordering::SeqCst);
                    }
                    got.push((i, answer));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_mid_storm_delivers_every_accepted_event_exactly_once_after_restart() {
    crash_mid_storm(Target::ChannelioChatwoot, EVENTS, KILL_AFTER).await;
}

/// The same at Hood, whose creates follow a lookup by e-mail, and whose limiter schedule
/// must carry over the restart (the sandbox counts Hood's 10/s and 150/min windows).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_mid_storm_creates_each_hood_profile_once_and_keeps_hoods_limits() {
    crash_mid_storm(Target::Hood, 30, 10).await;
}

/// `events` events; SIGKILL once `kill_after` were accepted; restart; senders retry.
#[allow(
    clippy::print_stdout,
    reason = "the run's numbers, shown with --no-capture"
)]
async fn crash_mid_storm(target: Target, events: usize, kill_after: usize) {
    let sandbox = Sandbox::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sandbox, target);
    let total = events;
    let delivered = |sandbox: &Sandbox| match target {
        Target::ChannelioChatwoot => sandbox.chatwoot_contacts().len(),
        Target::Hood => sandbox.hood_profiles().len(),
    };
    let events: Arc<Vec<Event>> = Arc::new((0..total).map(event).collect());
    let sender = Arc::new(Sender::new());

    // Phase 1: the storm, and SIGKILL once `kill_after` events were accepted.
    let relay = Relay::start(&config);
    let taken = Arc::new(AtomicUsize::new(0));
    let first = {
        let (sender, events, taken, base) = (
            sender.clone(),
            events.clone(),
            taken.clone(),
            relay.base.clone(),
        );
        tokio::spawn(
            async move { storm(&sender, &base, &events, (0..total).collect(), &taken).await },
        )
    };
    while taken.load(Ordering::SeqCst) < kill_after && !first.is_finished() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    relay.kill();
    let delivered_at_kill = delivered(&sandbox);
    let first = first.await.unwrap();
    let accepted_before_kill: Vec<usize> = first
        .iter()
        .filter(|(_, a)| *a == Answer::Taken)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        accepted_before_kill.len() >= kill_after && accepted_before_kill.len() < total,
        "the kill must fall inside the storm: {} of {total} accepted",
        accepted_before_kill.len()
    );
    assert!(
        delivered_at_kill < accepted_before_kill.len(),
        "deliveries must still be pending at the kill ({delivered_at_kill} contacts for {} accepted events)",
        accepted_before_kill.len()
    );

    // Phase 2: the same data directory; the senders retry every event that got no 202.
    let relay = Relay::start(&config);
    let resumed = relay.output();
    let mut answers: BTreeMap<usize, Answer> = first.into_iter().collect();
    let retries = AtomicUsize::new(0);
    for _round in 0..60 {
        let todo: Vec<usize> = (0..total).filter(|i| answers[i] != Answer::Taken).collect();
        if todo.is_empty() {
            break;
        }
        // The claims the killed run held mid-request are free at the restart, so a retry
        // is accepted at once; anything else (a 409) is retried a second later.
        if answers.values().any(|a| matches!(a, Answer::Status(_))) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        retries.fetch_add(todo.len(), Ordering::SeqCst);
        let retried = storm(
            &sender,
            &relay.base,
            &events,
            todo,
            &Arc::new(AtomicUsize::new(0)),
        )
        .await;
        answers.extend(retried);
    }
    let refused: Vec<_> = answers
        .iter()
        .filter(|(_, a)| **a != Answer::Taken)
        .collect();
    assert!(refused.is_empty(), "events never accepted: {refused:?}");
    let output = relay.stop();

    // The restart found what the killed run had queued (checked after the vendors, so a
    // run with `--memory` reports what it lost).
    let store_line = resumed
        .lines()
        .find_map(|l| l.trim().strip_prefix("store: "))
        .unwrap_or("");
    let queued_at_start: Option<usize> = store_line
        .split(" (")
        .nth(1)
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse().ok());
    let recovered = store_line
        .split(", ")
        .nth(1)
        .and_then(|l| l.split(' ').next())
        .unwrap_or("?");
    println!(
        "killed after {} of {total} events accepted, {delivered_at_kill} contacts delivered; \
         restart found {queued_at_start:?} deliveries queued ({recovered} in flight at the kill); \
         {} sender retries after the restart",
        accepted_before_kill.len(),
        retries.load(Ordering::SeqCst),
    );

    // Every contact exactly once at each vendor, created once: none missing, none twice.
    let mut problems = Vec::new();
    let count_by = |emails: Vec<Option<String>>| {
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for e in emails {
            *by.entry(e.unwrap_or_default()).or_default() += 1;
        }
        by
    };
    let creates = |vendor: Vendor, path: &dyn Fn(&str) -> bool| {
        count_by(
            sandbox
                .requests_of(vendor)
                .into_iter()
                .filter(|r| r.method == Method::POST && path(&r.path))
                .map(|r| {
                    r.body
                        .as_ref()
                        .and_then(|b| b["email"].as_str().map(str::to_string))
                })
                .collect(),
        )
    };
    let seen: Vec<(&str, BTreeMap<String, usize>)> = match target {
        Target::ChannelioChatwoot => vec![
            (
                "chatwoot contacts",
                count_by(
                    sandbox
                        .chatwoot_contacts()
                        .into_iter()
                        .map(|c| c.email)
                        .collect(),
                ),
            ),
            (
                "chatwoot creates",
                creates(Vendor::Chatwoot, &|p: &str| p.ends_with("/contacts")),
            ),
            (
                "channelio users",
                count_by(
                    sandbox
                        .channelio_users()
                        .into_iter()
                        .map(|u| {
                            u.profile
                                .get("email")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                        })
                        .collect(),
                ),
            ),
        ],
        Target::Hood => vec![
            (
                "hood profiles",
                count_by(
                    sandbox
                        .hood_profiles()
                        .into_iter()
                        .map(|p| p.email)
                        .collect(),
                ),
            ),
            (
                "hood creates",
                creates(Vendor::Hood, &|p: &str| p == "/v1/hood/profiles"),
            ),
        ],
    };
    for i in 0..total {
        let e = email(i);
        let accepted = if accepted_before_kill.contains(&i) {
            "accepted before the kill"
        } else {
            "accepted after the restart"
        };
        for (what, by) in &seen {
            let n = by.get(&e).copied().unwrap_or(0);
            if n != 1 {
                problems.push(format!("{e} ({accepted}): {n} {what}, want 1"));
            }
        }
    }
    for (what, by) in &seen {
        let count: usize = by.values().sum();
        if count != total {
            problems.push(format!("{what}: {count} in all, want {total}"));
        }
    }
    match queued_at_start {
        Some(n) if n > 0 => {}
        _ => problems.push(format!("nothing queued at the restart:\n{resumed}")),
    }
    if !output.contains("stopped; 0 undelivered, 0 dead-lettered") {
        problems.push(format!("not everything delivered at the stop:\n{output}"));
    }
    if sandbox.violation_count() != 0 {
        problems.push(format!("sandbox rules broken: {:?}", sandbox.violations()));
    }
    assert!(
        problems.is_empty(),
        "{} problems (killed after {} accepted, {delivered_at_kill} delivered; {queued_at_start:?} queued at restart):\n{}",
        problems.len(),
        accepted_before_kill.len(),
        problems.join("\n")
    );
}

/// One relay per data directory: a second `relay serve` on the same one exits at once,
/// naming the directory, instead of sharing (and corrupting) the first one's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_relay_on_the_same_data_directory_is_refused() {
    let sandbox = Sandbox::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &sandbox, Target::ChannelioChatwoot);
    let first = Relay::start(&config);
    let second = Command::new(env!("CARGO_BIN_EXE_relay"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("is in use by another relay") && stderr.contains("data"),
        "{stderr}"
    );
    // The first one is unaffected and stops cleanly.
    let output = first.stop();
    assert!(
        output.contains("stopped; 0 undelivered, 0 dead-lettered"),
        "{output}"
    );
}
