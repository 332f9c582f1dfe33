//! `template.yaml`, `samconfig.toml` and the code agree on configuration: every variable the
//! template sets is one the functions read, the staging and production environments exist
//! and differ where two stacks must not share (docs/environments.md), and each override
//! names a template parameter.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use relay_shared::runtime::env;
use serde_norway::Value;

fn template() -> Value {
    serde_norway::from_str(include_str!("../../template.yaml")).unwrap()
}

fn samconfig() -> toml::Table {
    include_str!("../../samconfig.toml").parse().unwrap()
}

/// The variables a function's `Environment.Variables` (with the globals) sets.
fn variables(t: &Value, function: &str) -> Vec<String> {
    let mut names = Vec::new();
    for vars in [
        &t["Globals"]["Function"]["Environment"]["Variables"],
        &t["Resources"][function]["Properties"]["Environment"]["Variables"],
    ] {
        if let Some(map) = vars.as_mapping() {
            names.extend(map.keys().map(|k| k.as_str().unwrap().to_string()));
        }
    }
    names
}

const FUNCTIONS: [&str; 4] = [
    "FormSignupFunction",
    "CrmChangeFunction",
    "EventSyncFunction",
    "SyncWorkerFunction",
];

#[test]
fn every_variable_the_template_sets_is_read_by_the_functions() {
    let t = template();
    for function in FUNCTIONS {
        for name in variables(&t, function) {
            if name == "RUST_LOG" {
                continue;
            }
            assert!(
                env::ALL.contains(&name.as_str()),
                "{function} gets {name}, which no function reads"
            );
        }
    }
    let worker = variables(&t, "SyncWorkerFunction");
    assert!(worker.contains(&env::LIMITER_ACCOUNT.to_string()));
    for function in FUNCTIONS {
        assert!(
            variables(&t, function).contains(&env::MAPPINGS_PARAMETER.to_string()),
            "{function} reads the mapping parameter"
        );
    }
}

#[test]
fn the_mapping_parameter_is_readable_by_every_function_and_only_it() {
    let t = template();
    let policy = &t["Resources"]["MappingsReadPolicy"];
    assert_eq!(policy["Condition"].as_str(), Some("HasMappingsParameter"));
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(statements.len(), 1);
    assert_eq!(statements[0]["Action"].as_str(), Some("ssm:GetParameter"));
    for function in FUNCTIONS {
        let policies = format!("{:?}", t["Resources"][function]["Properties"]["Policies"]);
        assert!(
            policies.contains("MappingsReadPolicy"),
            "{function} may read the mapping parameter"
        );
    }
}

/// `parameter_overrides` of one environment, as a map.
fn overrides(config: &toml::Table, environment: &str) -> BTreeMap<String, String> {
    config[environment]["deploy"]["parameters"]["parameter_overrides"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn staging_and_production_are_separate_stacks_that_share_nothing_by_accident() {
    let config = samconfig();
    let t = template();
    let parameters = t["Parameters"].as_mapping().unwrap();
    let stack = |env: &str| {
        config[env]["global"]["parameters"]["stack_name"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(stack("staging"), stack("production"));
    let (staging, production) = (
        overrides(&config, "staging"),
        overrides(&config, "production"),
    );
    for env in ["default", "staging", "production"] {
        for key in overrides(&config, env).keys() {
            assert!(
                parameters.contains_key(key.as_str()),
                "samconfig [{env}] overrides {key}, which the template does not declare"
            );
        }
    }
    for key in [
        "IngestSecretsParameterName",
        "VendorSecretsParameterName",
        "AppEventSource",
        "LimiterAccount",
    ] {
        let (s, p) = (&staging[key], &production[key]);
        assert_ne!(s, p, "{key} must differ between staging and production");
    }
    for env in ["staging", "production"] {
        assert_eq!(
            config[env]["build"]["parameters"]["beta_features"].as_bool(),
            Some(true),
            "`sam build --config-env {env}` opts in to the cargo-lambda build"
        );
    }
}

#[test]
fn the_event_rule_matches_the_stacks_own_source() {
    let t = template();
    let rule = &t["Resources"]["EventSyncFunction"]["Properties"]["Events"]["AppEvents"];
    let source = format!("{:?}", rule["Properties"]["Pattern"]["source"]);
    assert!(source.contains("AppEventSource"), "{source}");
}
