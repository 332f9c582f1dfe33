//! `relay send`: sign a sample event as its sender would and post it.

use std::path::PathBuf;

use anyhow::Context;
use secrecy::SecretString;

use super::{MappingsArgs, payload};

/// Sign a sample event as its sender would and post it.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Source name, e.g. typeform, hubspot, standard, app-contact.
    #[arg(long)]
    pub source: String,
    /// Base URL of the relay (the stack's WebhookBaseUrl output, or http://127.0.0.1:8787).
    #[arg(long)]
    pub url: String,
    /// Signing secret; default: the first secret of the source in `--config`, else the
    /// environment variable RELAY_SECRET_<SOURCE>.
    #[arg(long)]
    pub secret: Option<String>,
    /// Payload file (JSON); omit for the source's built-in sample.
    #[arg(long)]
    pub payload: Option<PathBuf>,
    #[command(flatten)]
    pub mappings: MappingsArgs,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;

    let chosen = args.mappings.load()?;
    // The config's current (first) secret of the source, when no --secret is given.
    let secret = args.secret.map(SecretString::from).or_else(|| {
        chosen
            .config
            .as_ref()
            .and_then(|c| c.sources.get(&args.source))
            .and_then(|s| s.secrets.first())
            .map(|s| SecretString::from(s.expose_secret().to_string()))
    });
    send(
        &chosen.mappings,
        &args.source,
        &args.url,
        secret,
        args.payload.as_deref(),
    )
    .await
}

async fn send(
    mappings: &relay_shared::mapping::Mappings,
    source: &str,
    url: &str,
    secret: Option<SecretString>,
    payload_path: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use relay_shared::ingress::signature::{SignRequest, Verifier};
    use relay_shared::mapping::Route;

    let mapping = mappings
        .source(source)
        .with_context(|| format!("no source named `{source}` in the mappings"))?;
    let body = payload(source, payload_path)?;
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
                .or_else(|| std::env::var(&var).ok().map(SecretString::from))
                .with_context(|| {
                    format!("no secret: pass --secret, a --config with the source, or set {var}")
                })?;
            let verifier = Verifier::new(scheme, &[secret])?;
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
