//! `relay check-config` on a relay config's Omnivibe agents: every problem the worker would
//! refuse at start-up is named (by position and staff id, never by token) before it runs.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn check(omnivibe: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        format!(
            "[vendors.omnivibe]\nbase_url = \"https://app.omnivibe.com.br\"\n{omnivibe}\n\n[vendors.hood]\ntoken = \"hood-tok-1\"\n"
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_agents_with_their_own_tokens_are_accepted_and_listed() {
    let (ok, stdout, stderr) = check(
        r#"agents = [
  { staff_id = "s_7", api_access_token = "omni-tok-hana" },
  { staff_id = "s_9", api_access_token = "omni-tok-joao" },
]"#,
    );
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("omnivibe agents (staff ids): s_7, s_9"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("omni-tok"),
        "no token is printed: {stdout}"
    );
}

#[test]
fn a_duplicate_staff_id_an_empty_token_and_a_shared_token_are_each_named() {
    let (ok, stdout, stderr) = check(
        r#"agents = [
  { staff_id = "s_7", api_access_token = "omni-tok-hana" },
  { staff_id = "s_7", api_access_token = "omni-tok-other" },
  { staff_id = "s_9", api_access_token = "  " },
  { staff_id = "", api_access_token = "omni-tok-nobody" },
  { staff_id = "s_11", api_access_token = "omni-tok-hana" },
]"#,
    );
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    for expected in [
        "vendor omnivibe: agents[1]: staff id `s_7` is already listed at agents[0]",
        "vendor omnivibe: agents[2] (staff id `s_9`): `api_access_token` is empty",
        "vendor omnivibe: agents[3]: `staff_id` is empty",
        "vendor omnivibe: agents[4] (staff id `s_11`) has the same token as staff id `s_7`",
    ] {
        assert!(stderr.contains(expected), "{expected}\n{stderr}");
    }
    assert!(
        !stderr.contains("omni-tok"),
        "no token is printed: {stderr}"
    );
}

#[test]
fn a_lone_token_of_the_old_format_is_refused_saying_what_to_write() {
    let (ok, stdout, stderr) = check(r#"api_access_token = "omni-tok-hana""#);
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains(
            "`api_access_token` alone would change the profile of its owner for every staff id"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("agents = [{ staff_id = "), "{stderr}");
    assert!(!stderr.contains("omni-tok"), "{stderr}");
}

#[test]
fn other_vendors_settings_are_checked_as_the_worker_builds_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(
        &file,
        "[vendors.hood]\nbase_url = \"http://hood.example.com\"\ntoken = \"hood-tok-1\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("check-config")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("vendor hood: base_url must be an absolute https URL"),
        "{stderr}"
    );
}
