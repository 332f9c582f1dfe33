//! Loading a mapping file rejects what a payload cannot fix, naming file, section and field.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use relay_core::mapping::{LoadError, Mappings};

const VENDORS: &str = r#"
[vendors.hood.fields]
email = "email"
phone = "mobile_phone_number"
"#;

fn load(text: &str) -> LoadError {
    Mappings::from_toml("relay.toml", text).expect_err("the file is invalid")
}

fn with_source(fields: &str) -> String {
    format!(
        "[sources.signup]\nsignature = {{ scheme = \"typeform\" }}\nroute = \"forms\"\nvendors = [\"hood\"]\nkind = \"signup\"\n[sources.signup.fields]\n{fields}\n{VENDORS}"
    )
}

#[test]
fn the_builtin_file_loads() {
    let m = Mappings::builtin().unwrap();
    let names: Vec<&str> = m.sources().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "app-contact",
            "app-staff",
            "hubspot",
            "pipedrive",
            "standard",
            "tally",
            "typeform",
            "webflow"
        ]
    );
}

#[test]
fn a_bad_expression_names_file_source_and_field() {
    let err = load(&with_source(r#"email = "answers[?type=='email'.email""#));
    assert_eq!(err.errors.len(), 1);
    let message = err.errors[0].to_string();
    assert!(
        message.starts_with(r#"relay.toml: source "signup", field "email": invalid JMESPath expression `answers[?type=='email'.email`"#),
        "{message}"
    );
}

#[test]
fn an_unknown_vendor_field_is_refused_with_the_known_ones() {
    let text = with_source(r#"email = "email""#)
        .replace(r#"phone = "mobile_phone_number""#, r#"phone = "mobile""#);
    let err = load(&text);
    assert_eq!(
        err.errors[0].to_string(),
        "relay.toml: vendor \"hood\", field \"phone\": unknown Hood field `mobile` (updatable fields: email, \
         mobile_phone_number, full_name, organization_id, lists, comment, custom_properties.<name>)"
    );
}

#[test]
fn a_custom_property_name_hood_would_refuse_is_refused() {
    let text = format!(
        "{}\"custom.plan\" = \"custom_properties.Plan Name\"\n",
        with_source(r#"email = "email""#)
    );
    let err = load(&text);
    assert_eq!(
        err.errors[0].to_string(),
        "relay.toml: vendor \"hood\", field \"custom.plan\": Hood would refuse the custom property name `Plan Name`: \
         use lowercase letters, digits and `_`, starting with a letter, at most 64 characters"
    );
    let reserved = format!(
        "{}\"custom.x\" = \"custom_properties.email\"\n",
        with_source(r#"email = "email""#)
    );
    assert!(
        load(&reserved)
            .to_string()
            .contains("is a built-in Hood profile field")
    );
}

#[test]
fn password_fields_can_never_be_mapped() {
    let text = format!(
        "{}\n[vendors.omnivibe.fields]\n\"custom.secret\" = \"password\"\n",
        with_source(r#"email = "email""#)
    );
    assert!(
        load(&text)
            .to_string()
            .contains("`password` is a password field; profile-relay never syncs passwords")
    );
}

#[test]
fn a_value_of_the_wrong_kind_is_refused() {
    let text = format!(
        "{}tags = \"full_name\"\n",
        with_source(r#"email = "email""#)
    );
    assert!(
        load(&text)
            .to_string()
            .contains("hood field `full_name` takes text, but `tags` holds a list")
    );
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = with_source("email = \"a[\"\nphone = \"b[\"\nnickname = \"c\"");
    let err = load(&text);
    let locations: Vec<&str> = err.errors.iter().map(|e| e.location.as_str()).collect();
    assert_eq!(
        locations,
        [
            r#"source "signup", field "email""#,
            r#"source "signup", field "nickname""#,
            r#"source "signup", field "phone""#
        ]
    );
    assert!(
        err.to_string()
            .starts_with("3 problems in the mapping file:\n  relay.toml: ")
    );
}

#[test]
fn a_typo_in_a_section_is_reported_with_its_line() {
    let text = "[sources.signup]\nsignature = { scheme = \"tally\" }\nroute = \"forms\"\nvendors = [\"hood\"]\nkind = \"signup\"\nfeilds = {}\n";
    let err = load(text);
    assert_eq!(err.errors[0].location, "line 6, column 1");
    assert!(
        err.errors[0].problem.contains("unknown field `feilds`"),
        "{}",
        err.errors[0].problem
    );
}

#[test]
fn a_source_must_sync_into_a_configured_vendor_and_identify_contacts() {
    let text = with_source(r#"full_name = "name""#).replace(
        r#"vendors = ["hood"]"#,
        r#"vendors = ["hood", "chatwoot", "mailchimp"]"#,
    );
    let err = load(&text).to_string();
    assert!(
        err.contains("vendor `chatwoot` has no [vendors.chatwoot] section"),
        "{err}"
    );
    assert!(err.contains("unknown vendor `mailchimp`"), "{err}");
    assert!(
        err.contains("map at least one of `email`, `phone` or `key`"),
        "{err}"
    );
}

#[test]
fn event_sources_need_a_unique_detail_type() {
    let text = format!(
        "{VENDORS}\n[sources.a]\nroute = \"events\"\nvendors = [\"hood\"]\nkind = \"updated\"\n[sources.a.fields]\nemail = \"detail.email\"\n\
         [sources.b]\nroute = \"events\"\ndetail_type = \"X\"\nvendors = [\"hood\"]\nkind = \"updated\"\n[sources.b.fields]\nemail = \"e\"\n\
         [sources.c]\nroute = \"events\"\ndetail_type = \"X\"\nvendors = [\"hood\"]\nkind = \"updated\"\n[sources.c.fields]\nemail = \"e\"\n"
    );
    let err = load(&text).to_string();
    assert!(err.contains("source \"a\", field \"detail_type\": an `events` source needs the EventBridge detail-type"), "{err}");
    assert!(
        err.contains("detail-type `X` is already handled by source \"b\""),
        "{err}"
    );
}

#[test]
fn the_default_phone_region_must_exist() {
    let text = format!(
        "[settings]\ndefault_phone_region = \"ZZ\"\n{}",
        with_source(r#"email = "email""#)
    );
    assert!(
        load(&text)
            .to_string()
            .contains("settings, field \"default_phone_region\": unknown phone region `ZZ`")
    );
}

#[test]
fn a_vendor_section_is_read_by_that_vendors_rules_with_its_line() {
    let text = format!(
        "{}\n[vendors.channelio]\nmember_id = \"key\"\nfeilds = {{ email = \"profile.email\" }}\n\n[vendors.mailchimp.fields]\nemail = \"email\"\n",
        with_source(r#"email = "email""#)
    );
    let line = text
        .lines()
        .position(|l| l == "[vendors.channelio]")
        .unwrap()
        + 1;
    let messages: Vec<String> = load(&text).errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            format!(
                "relay.toml: vendor \"channelio\" (line {line}, column 1): unknown field `feilds`, expected `member_id` or `fields`"
            ),
            "relay.toml: vendors.mailchimp: unknown vendor (known: hood, channelio, omnivibe, chatwoot)"
                .to_string(),
        ]
    );
}

#[test]
fn every_registered_vendor_reads_its_own_section() {
    use relay_core::model::Vendor;
    let m = Mappings::builtin().unwrap();
    let present: Vec<Vendor> = m.vendors.vendors().collect();
    assert_eq!(present, Vendor::ALL);
    assert!(m.vendors.get::<relay_core::vendors::hood::Hood>().is_some());
    // A mapping is read back only as its own vendor's type.
    assert!(
        m.vendors
            .get_as::<relay_core::vendors::channelio::ChannelMapping>(Vendor::Hood)
            .is_none()
    );
}
