//! Ingest counters per source: events accepted, duplicates, ignored (kinds without a
//! mapping), refused (by code) and fields dropped (by field and code). In Lambda each
//! delivery writes one CloudWatch Embedded Metric Format line (namespace `ProfileRelay`,
//! dimension `Source`); locally and in tests they are kept in memory.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

use super::outcome::Accepted;
use crate::worker::metrics::NAMESPACE;

/// What the counters are keyed by: (source, metric name). Refusals are counted as
/// `Refused.<code>` and dropped fields as `FieldDropped.<code>`, besides their totals.
pub type IngestCounts = BTreeMap<(String, String), u64>;

/// Where ingest metrics go.
#[derive(Debug)]
pub struct IngestMetrics {
    emf: bool,
    counts: Mutex<IngestCounts>,
}

impl IngestMetrics {
    /// Counters kept in memory only (local runs, tests).
    pub fn in_memory() -> Self {
        IngestMetrics {
            emf: false,
            counts: Mutex::default(),
        }
    }

    /// Counters kept in memory and written as EMF lines to stdout (Lambda).
    pub fn emf() -> Self {
        IngestMetrics {
            emf: true,
            counts: Mutex::default(),
        }
    }

    /// Counts one delivery's outcome.
    pub fn record(&self, source: &str, outcome: &Accepted) {
        let values = values_of(outcome);
        if let Ok(mut counts) = self.counts.lock() {
            for (name, n) in &values {
                *counts
                    .entry((source.to_string(), name.clone()))
                    .or_default() += n;
            }
        }
        if self.emf && !values.is_empty() {
            #[allow(
                clippy::print_stdout,
                reason = "EMF lines are read by CloudWatch from stdout"
            )]
            {
                println!(
                    "{}",
                    emf_line(source, &values, chrono::Utc::now().timestamp_millis())
                );
            }
        }
    }

    /// A copy of every counter.
    pub fn snapshot(&self) -> IngestCounts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// One counter summed over sources.
    pub fn total(&self, name: &str) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((_, n), _)| n == name)
            .map(|(_, v)| v)
            .sum()
    }
}

/// The non-zero metric values of one delivery.
fn values_of(outcome: &Accepted) -> BTreeMap<String, u64> {
    let mut values = BTreeMap::new();
    let mut add = |name: String, n: u64| {
        if n > 0 {
            *values.entry(name).or_default() += n;
        }
    };
    let n = |x: usize| u64::try_from(x).unwrap_or(u64::MAX);
    add("Accepted".into(), n(outcome.accepted));
    add("Duplicate".into(), n(outcome.duplicates));
    add("Conflict".into(), n(outcome.conflicts));
    add("Ignored".into(), n(outcome.ignored));
    add("Refused".into(), n(outcome.refused.len()));
    for refused in &outcome.refused {
        add(format!("Refused.{}", refused.code), 1);
    }
    add("PersonCreated".into(), n(outcome.identity.created));
    add("PersonMerged".into(), n(outcome.identity.merged));
    add("IdentityCalls".into(), n(outcome.identity.calls));
    add("FieldDropped".into(), n(outcome.warnings.len()));
    for warning in &outcome.warnings {
        add(format!("FieldDropped.{}", warning.code), 1);
    }
    values
}

/// One EMF document holding every metric of a delivery.
fn emf_line(source: &str, values: &BTreeMap<String, u64>, timestamp_ms: i64) -> String {
    let metrics: Vec<Value> = values
        .keys()
        .map(|name| json!({"Name": name, "Unit": "Count"}))
        .collect();
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Source"]],
                "Metrics": metrics,
            }]
        }),
    );
    doc.insert("Source".into(), json!(source));
    for (name, n) in values {
        doc.insert(name.clone(), json!(n));
    }
    Value::Object(doc).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::outcome::{EventWarning, RefusedEvent};

    fn outcome() -> Accepted {
        Accepted {
            accepted: 2,
            duplicates: 1,
            ignored: 3,
            warnings: vec![
                EventWarning {
                    event: "e1".into(),
                    field: "phone".into(),
                    code: "phone_invalid",
                },
                EventWarning {
                    event: "e2".into(),
                    field: "phone".into(),
                    code: "phone_invalid",
                },
            ],
            refused: vec![RefusedEvent {
                event: "e3".into(),
                code: "contact_unidentifiable",
                message: String::new(),
            }],
            ..Accepted::default()
        }
    }

    #[test]
    fn counts_per_source_and_code() {
        let m = IngestMetrics::in_memory();
        m.record("hubspot", &outcome());
        m.record("hubspot", &outcome());
        m.record("typeform", &outcome());
        let snap = m.snapshot();
        assert_eq!(snap[&("hubspot".into(), "Accepted".into())], 4);
        assert_eq!(
            snap[&("hubspot".into(), "FieldDropped.phone_invalid".into())],
            4
        );
        assert_eq!(
            snap[&("typeform".into(), "Refused.contact_unidentifiable".into())],
            1
        );
        assert!(!snap.contains_key(&("typeform".into(), "Conflict".into())));
        assert_eq!(m.total("Ignored"), 9);
    }

    #[test]
    fn one_emf_line_per_delivery_with_every_metric_declared() {
        let line: Value = serde_json::from_str(&emf_line(
            "hubspot",
            &values_of(&outcome()),
            1_700_000_000_000,
        ))
        .unwrap();
        let declared: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in &declared {
            assert!(line.get(*name).is_some(), "{name} has no value");
        }
        assert!(declared.contains(&"FieldDropped.phone_invalid"));
        assert_eq!(line["FieldDropped"], 2);
        assert_eq!(line["Source"], "hubspot");
        assert_eq!(
            line["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["Source"]])
        );
    }
}
