//! The local relay (`relay serve`) in tests: a config for one signed source, and a signed
//! webhook posted to it over real HTTP, as the sender would.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use chrono::Utc;
use http::Method;
use relay_local::LocalConfig;
use relay_local::config::{ServerSection, SourceSection, WorkerSection};
use relay_shared::ingress::signature::{SignRequest, Verifier};
use relay_shared::mapping::{Mappings, Route};
use relay_shared::vendors::VendorConfigs;
use secrecy::SecretString;

/// A relay on a free loopback port, in memory unless started on disk, with `source`
/// enabled under `secret` and the given vendors.
pub fn config(source: &str, secret: &str, vendors: VendorConfigs) -> LocalConfig {
    LocalConfig {
        server: ServerSection {
            listen: ([127, 0, 0, 1], 0).into(),
            data_dir: None,
        },
        mappings: None,
        sources: BTreeMap::from([(
            source.to_string(),
            SourceSection {
                secrets: vec![SecretString::from(secret)],
            },
        )]),
        vendors,
        worker: WorkerSection {
            concurrency: 2,
            drain_timeout_secs: 30,
        },
        limits: Default::default(),
    }
}

/// Posts `body` to the relay at `addr` on `source`'s route, signed with `secret` by the
/// source's own scheme (the built-in mappings).
pub async fn post_signed(
    addr: SocketAddr,
    source: &str,
    secret: &str,
    body: &str,
) -> reqwest::Response {
    let mappings = Mappings::builtin().expect("the built-in mappings load");
    let mapping = mappings.source(source).expect("a built-in source");
    let route = if mapping.route == Route::Forms {
        "forms"
    } else {
        "crm"
    };
    let url = format!("http://{addr}/hooks/{route}/{source}");
    let scheme = mapping.signature.clone().expect("a webhook source");
    let headers = Verifier::new(&scheme, &[SecretString::from(secret)])
        .expect("a usable secret")
        .sign(&SignRequest {
            method: &Method::POST,
            uri: &url,
            body: body.as_bytes(),
            now: Utc::now(),
            delivery_id: None,
        })
        .expect("signed");
    reqwest::Client::new()
        .post(&url)
        .headers(headers)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("the relay answers")
}
