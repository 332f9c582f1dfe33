//! The template's CloudWatch dashboard shows the metrics the code emits: its body is valid
//! JSON once CloudFormation substitutes it, and every metric it searches for is one the
//! worker or ingest writes (a renamed metric would leave an empty graph).

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use relay_shared::worker::metrics::{Counter, LAG_METRIC, NAMESPACE};
use serde_norway::Value;

fn dashboard_body() -> String {
    let t: Value = serde_norway::from_str(include_str!("../../template.yaml")).unwrap();
    let body = &t["Resources"]["Dashboard"]["Properties"]["DashboardBody"];
    let Value::Tagged(tagged) = body else {
        panic!("DashboardBody is a !Sub: {body:?}");
    };
    assert_eq!(tagged.tag.to_string(), "!Sub");
    let parts = tagged.value.as_sequence().unwrap();
    let mut text = parts[0].as_str().unwrap().to_string();
    for (name, value) in parts[1].as_mapping().unwrap() {
        text = text.replace(
            &format!("${{{}}}", name.as_str().unwrap()),
            value.as_str().unwrap(),
        );
    }
    // What CloudFormation fills in.
    for (var, value) in [
        ("${AWS::Region}", "eu-west-1"),
        ("${DeadLetterQueue.QueueName}", "dlq"),
        ("${EventSyncFailureQueue.QueueName}", "events-dlq"),
    ] {
        text = text.replace(var, value);
    }
    assert!(!text.contains("${"), "unsubstituted: {text}");
    text
}

#[test]
fn the_dashboard_body_is_json_and_graphs_the_metrics_the_code_emits() {
    let body: serde_json::Value = serde_json::from_str(&dashboard_body()).unwrap();
    let text = body.to_string();
    assert!(text.contains(&format!("{{{NAMESPACE},Vendor}}")), "{text}");
    assert!(text.contains(&format!("{{{NAMESPACE},Source}}")), "{text}");
    for counter in [
        Counter::Synced,
        Counter::Retried,
        Counter::Throttled,
        Counter::DeadLettered,
    ] {
        assert!(
            text.contains(&format!("MetricName=\\\"{}\\\"", counter.name())),
            "{}",
            counter.name()
        );
    }
    for ingest in ["Accepted", "Duplicate", "Ignored", "Refused"] {
        assert!(
            text.contains(&format!("MetricName=\\\"{ingest}\\\"")),
            "{ingest}"
        );
    }
    assert!(text.contains(&format!("MetricName=\\\"{LAG_METRIC}\\\"', 'p50'")));
    assert!(text.contains(&format!("MetricName=\\\"{LAG_METRIC}\\\"', 'p99'")));
    let widgets = body["widgets"].as_array().unwrap();
    let queues: Vec<&str> = widgets
        .iter()
        .flat_map(|w| w["properties"]["metrics"].as_array().unwrap())
        .filter(|m| m[0] == "AWS/SQS")
        .map(|m| m[3].as_str().unwrap())
        .collect();
    assert_eq!(queues, ["dlq", "events-dlq"]);
}
