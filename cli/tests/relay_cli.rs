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
        stdout.contains("channelio: PUT /open/v5/users/@p00000000000000000000000000000000")
            && !stdout.contains("users/@email"),
        "{stdout}"
    );
    assert!(
        stdout.contains("hood: POST /v1/hood/profiles {\"email\":\"ann.lee@example.com\""),
        "{stdout}"
    );
}

/// The commands and outputs shown in `docs/mappings.md`'s ```console blocks: each `$ relay ...`
/// line with the lines printed after it.
fn console_blocks(doc: &str) -> Vec<(Vec<String>, String)> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```console" {
            continue;
        }
        let mut command = None;
        let mut output = String::new();
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            match l.strip_prefix("$ relay ") {
                Some(c) => command = Some(c.split_whitespace().map(String::from).collect()),
                None => {
                    output.push_str(l.trim_end());
                    output.push('\n');
                }
            }
        }
        blocks.push((
            command.expect("a console block starts with `$ relay`"),
            output,
        ));
    }
    blocks
}

#[test]
fn the_worked_example_in_the_docs_prints_what_the_docs_show() {
    let doc = std::fs::read_to_string(workspace_file("docs/mappings.md")).unwrap();
    let blocks = console_blocks(&doc);
    assert_eq!(blocks.len(), 2, "check-config and plan");
    for (args, shown) in blocks {
        let out = relay()
            .args(&args)
            .current_dir(workspace_file(""))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "relay {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: String = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| format!("{}\n", l.trim_end()))
            .collect();
        assert_eq!(
            printed, shown,
            "relay {args:?} prints what docs/mappings.md shows"
        );
    }
}

#[test]
fn the_worked_example_maps_the_forms_questions_and_hidden_field() {
    let out = relay()
        .args(["plan", "--mappings"])
        .arg(workspace_file("docs/examples/typeform-mappings.toml"))
        .args(["--source", "typeform", "--payload"])
        .arg(workspace_file("docs/examples/typeform-payload.json"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The e-mail question `work_email`, the `company` question, the hidden field `plan`.
    assert!(
        stdout.contains(
            r#"channelio: PUT /open/v5/users/@p00000000000000000000000000000000 {"profile":{"companyName":"Cobol Systems","email":"grace.hopper@example.com","plan":"team"}}"#
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            r#"hood: PATCH /v1/hood/profiles/{id} {"custom_properties":{"company_name":"Cobol Systems","plan":"team"}}"#
        ),
        "{stdout}"
    );
    assert!(
        !stdout.contains("chatwoot"),
        "only Hood and Channel.io: {stdout}"
    );
}

/// A relay config beside a mapping file, as `relay.example.toml` describes it, with the
/// `mappings` line uncommented.
fn example_config_with_mappings(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let example = std::fs::read_to_string(workspace_file("relay.example.toml")).unwrap();
    assert!(example.contains("\n# mappings = \"mappings.toml\"\n"));
    let config = example.replace(
        "\n# mappings = \"mappings.toml\"\n",
        "\nmappings = \"mappings.toml\"\n",
    );
    std::fs::write(dir.join("relay.toml"), config).unwrap();
    std::fs::copy(
        workspace_file("docs/examples/typeform-mappings.toml"),
        dir.join("mappings.toml"),
    )
    .unwrap();
    dir.join("relay.toml")
}

fn with_example_variables(cmd: &mut Command) -> &mut Command {
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
    cmd.env("PIPEDRIVE_BASIC_AUTH", "relay:pd-pass").env(
        "STANDARD_WEBHOOKS_SECRET",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    )
}

#[test]
fn the_example_configs_mappings_line_is_accepted_where_it_stands() {
    let dir = std::env::temp_dir().join(format!("relay-cli-example-{}", std::process::id()));
    let config = example_config_with_mappings(&dir);
    let out = with_example_variables(relay().arg("check-config").arg(&config))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The example names sources the worked example's mappings do not have: that, and only
    // that, is reported; the `mappings` key itself is accepted.
    assert!(!stderr.contains("unknown field"), "{stderr}");
    assert!(
        stderr.contains("source `tally`: no webhook source of that name in the mappings"),
        "the config's mappings were used: {stderr}"
    );
}

#[test]
fn plan_uses_the_mappings_of_a_relay_config() {
    let dir = std::env::temp_dir().join(format!("relay-cli-plan-{}", std::process::id()));
    let config = example_config_with_mappings(&dir);
    let out = with_example_variables(
        relay()
            .args(["plan", "--source", "typeform", "--config"])
            .arg(&config)
            .arg("--payload")
            .arg(workspace_file("docs/examples/typeform-payload.json")),
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(r#""plan":"team""#), "{stdout}");
    // The built-in mappings do not read the hidden field `plan`.
    let builtin = relay()
        .args(["plan", "--source", "typeform", "--payload"])
        .arg(workspace_file("docs/examples/typeform-payload.json"))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&builtin.stdout).contains(r#""plan":"team""#));
}

/// One HTTP request received on `listener`, answered `202 {}`: (head, body).
fn receive_one(listener: &std::net::TcpListener) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let (mut stream, _) = listener.accept().unwrap();
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        data.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&data).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let head = text[..end].to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                let body = data[end + 4..end + 4 + length].to_vec();
                stream
                    .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
                    .unwrap();
                return (head, body);
            }
        }
        assert!(
            n > 0,
            "the connection closed before the request was complete"
        );
    }
}

#[test]
fn send_signs_with_the_configs_secret_and_posts_your_payload() {
    use relay_shared::ingress::signature::{InboundRequest, SignatureScheme, Verifier};

    let dir = std::env::temp_dir().join(format!("relay-cli-send-{}", std::process::id()));
    let config = example_config_with_mappings(&dir);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || receive_one(&listener));
    let out = with_example_variables(
        relay()
            .args(["send", "--source", "typeform", "--url", &url, "--config"])
            .arg(&config)
            .arg("--payload")
            .arg(workspace_file("docs/examples/typeform-payload.json")),
    )
    .env("TYPEFORM_SECRET", "tf-config-secret")
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (head, body) = server.join().unwrap();
    assert!(head.starts_with("POST /hooks/forms/typeform "), "{head}");
    assert_eq!(
        body,
        std::fs::read(workspace_file("docs/examples/typeform-payload.json")).unwrap()
    );
    let signature = head
        .lines()
        .find_map(|l| l.strip_prefix("typeform-signature: "))
        .unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("typeform-signature", signature.parse().unwrap());
    let uri = format!("{url}/hooks/forms/typeform");
    let verify = |secret: &str| {
        Verifier::new(
            &SignatureScheme::Typeform,
            &[secrecy::SecretString::from(secret)],
        )
        .unwrap()
        .verify(
            &InboundRequest::new(&http::Method::POST, &uri, &headers, &body),
            chrono::Utc::now(),
        )
    };
    let (good, bad) = (verify("tf-config-secret"), verify("s3cret-value"));
    assert!(
        good.is_ok(),
        "signed with the config's secret: {good:?} {bad:?}\n{head}"
    );
    assert!(verify("s3cret-value").is_err());
}

/// The example's `[vendors.hubspot_crm]` lines, uncommented, are accepted; a plain-http
/// base URL for it is reported (the token would travel in clear).
#[test]
fn check_config_accepts_the_hubspot_crm_reader_and_refuses_plain_http_for_it() {
    let dir = std::env::temp_dir().join(format!("relay-cli-crm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let example = std::fs::read_to_string(workspace_file("relay.example.toml")).unwrap();
    let commented = "# [vendors.hubspot_crm]\n# token = \"${HUBSPOT_PRIVATE_APP_TOKEN}\"\n# limits = [{ limit = 100, per = \"10s\" }]";
    assert!(example.contains(commented));
    let on = commented.replace("# ", "");
    let config = dir.join("relay.toml");
    std::fs::write(&config, example.replace(commented, &on)).unwrap();
    let out = with_example_variables(relay().arg("check-config").arg(&config))
        .env("HUBSPOT_PRIVATE_APP_TOKEN", "pat-na1-0e1b7c2d")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let plain = on.replace(
        "[vendors.hubspot_crm]\n",
        "[vendors.hubspot_crm]\nbase_url = \"http://api.hubapi.com\"\n",
    );
    std::fs::write(&config, example.replace(commented, &plain)).unwrap();
    let out = with_example_variables(relay().arg("check-config").arg(&config))
        .env("HUBSPOT_PRIVATE_APP_TOKEN", "pat-na1-0e1b7c2d")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("hubspot_crm: base_url must be an absolute https URL"),
        "{stderr}"
    );
    assert!(!stderr.contains("pat-na1"), "{stderr}");
}
