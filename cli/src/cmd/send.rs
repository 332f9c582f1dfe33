//! `relay send`: sign a sample event as its sender would and post it.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use relay_sandbox::samples;
use relay_shared::mapping::Mappings;

/// Sign a sample event as its sender would and post it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source name, e.g. typeform, hubspot, standard, app-contact.
    #[arg(long)]
    pub source: String,
    /// Base URL of the relay (the stack's WebhookBaseUrl output, or http://127.0.0.1:8787).
    #[arg(long)]
    pub url: String,
    /// Signing secret; default: the environment variable RELAY_SECRET_<SOURCE>.
    #[arg(long)]
    pub secret: Option<String>,
    /// Payload file (JSON); omit for the source's built-in sample.
    #[arg(long)]
    pub payload: Option<PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    send(&args.source, &args.url, args.secret, args.payload.as_ref()).await
}

async fn send(
    source: &str,
    url: &str,
    secret: Option<String>,
    payload: Option<&PathBuf>,
) -> anyhow::Result<()> {
    use relay_shared::ingress::signature::{SignRequest, Verifier};
    use relay_shared::mapping::Route;

    let mappings = Mappings::builtin().map_err(|e| anyhow!("{e}"))?;
    let mapping = mappings
        .source(source)
        .with_context(|| format!("no source named `{source}`"))?;
    let body = match payload {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => samples::sample(source)
            .with_context(|| format!("no built-in sample for `{source}`"))?
            .body
            .to_string(),
    };
    let base = url.trim_end_matches('/');
    let (target, headers) = match (&mapping.signature, mapping.route) {
        (None, _) => (format!("{base}/events"), http::HeaderMap::new()),
        (Some(scheme), route) => {
            let target = format!(
                "{base}/hooks/{}/{source}",
                if route == Route::Forms {
                    "forms"
                } else {
                    "crm"
                }
            );
            let var = format!(
                "RELAY_SECRET_{}",
                source.to_ascii_uppercase().replace('-', "_")
            );
            let secret = secret
                .or_else(|| std::env::var(&var).ok())
                .with_context(|| format!("no secret: pass --secret or set {var}"))?;
            let verifier = Verifier::new(scheme, &[secrecy::SecretString::from(secret)])?;
            let request = SignRequest {
                method: &http::Method::POST,
                uri: &target,
                body: body.as_bytes(),
                now: chrono::Utc::now(),
                delivery_id: None,
            };
            (target.clone(), verifier.sign(&request)?)
        }
    };
    let response = reqwest::Client::new()
        .post(&target)
        .headers(headers)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting to {target}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    println!("POST {target} → {status}");
    println!("{text}");
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("the relay answered {status}")
    }
}
