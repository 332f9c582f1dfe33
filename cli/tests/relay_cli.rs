//! The `relay` binary as a user runs it.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn relay() -> Command {
    Command::new(env!("CARGO_BIN_EXE_relay"))
}

fn workspace_file(name: &str) -> String {
    format!("{}/../{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_config_accepts_the_example_config_with_its_variables_set() {
    let mut cmd = relay();
    cmd.arg("check-config")
        .arg(workspace_file("relay.example.toml"));
    for var in [
        "TYPEFORM_SECRET",
        "TALLY_SECRET",
        "WEBFLOW_SECRET",
        "HUBSPOT_CLIENT_SECRET",
        "HOOD_TOKEN",
        "CHANNELIO_ACCESS_KEY",
        "CHANNELIO_ACCESS_SECRET",
        "OMNIVIBE_AGENT_TOKEN",
        "CHATWOOT_API_TOKEN",
    ] {
        cmd.env(var, "s3cret-value");
    }
    cmd.env("PIPEDRIVE_BASIC_AUTH", "relay:pd-pass");
    cmd.env(
        "STANDARD_WEBHOOKS_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    );
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("relay.example.toml: OK"), "{stdout}");
    assert!(stdout.contains("source typeform     enabled"), "{stdout}");
    assert!(!stdout.contains("s3cret-value"), "no secret is printed");
}

#[test]
fn check_config_names_a_missing_variable() {
    let out = relay()
        .arg("check-config")
        .arg(workspace_file("relay.example.toml"))
        .env_clear()
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is used but the environment variable TYPEFORM_SECRET is not set"),
        "{stderr}"
    );
}

#[test]
fn check_config_shows_mapping_errors_with_file_and_field() {
    let dir = std::env::temp_dir().join(format!("relay-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mappings.toml");
    std::fs::write(
        &file,
        "[sources.signup]\nsignature = { scheme = \"typeform\" }\nroute = \"forms\"\nvendors = [\"hood\"]\nkind = \"signup\"\n\
         [sources.signup.fields]\nemail = \"answers[?type=='email'.email\"\n[vendors.hood.fields]\nemail = \"email\"\n\"custom.plan\" = \"custom_properties.Plan Name\"\n",
    )
    .unwrap();
    let out = relay()
        .arg("check-config")
        .arg("--mappings")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("2 problems in the mapping file:"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "mappings.toml: source \"signup\", field \"email\": invalid JMESPath expression"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("vendor \"hood\", field \"custom.plan\": Hood would refuse the custom property name `Plan Name`"), "{stderr}");
}

#[test]
fn plan_prints_the_exact_requests_of_a_sample() {
    let out = relay()
        .args(["plan", "--source", "typeform"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("channelio: PUT /open/v5/users/@email:ann.lee@example.com"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hood: POST /v1/hood/profiles {\"email\":\"ann.lee@example.com\""),
        "{stdout}"
    );
}
