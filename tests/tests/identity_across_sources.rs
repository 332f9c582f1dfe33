//! One person, one record at each vendor, whichever sources it arrives from: the same 20
//! people sign up through Typeform, are updated by a Standard Webhooks sender and edited
//! in HubSpot (one request per contact edit, one event per property, as HubSpot sends
//! them) — all posted at once — and each vendor ends with exactly 20 records, each with the
//! person's name, e-mail and phone. Ingest and worker on DynamoDB Local, against the
//! stateful vendors.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use http::StatusCode;
use relay_tests::pipeline::Pipeline;
use relay_tests::stateful_vendors::Faults;
use relay_tests::webhooks;
use serde_json::{Value, json};
use tower::ServiceExt;

/// A person as they type themselves into each system.
struct Person {
    first: &'static str,
    last: &'static str,
    /// As typed into the form, into the app and into HubSpot (capitals differ).
    emails: [&'static str; 3],
    /// As typed: international, with spaces, dashes and brackets.
    phone: &'static str,
    e164: &'static str,
}

const fn person(
    first: &'static str,
    last: &'static str,
    emails: [&'static str; 3],
    phone: &'static str,
    e164: &'static str,
) -> Person {
    Person {
        first,
        last,
        emails,
        phone,
        e164,
    }
}

#[rustfmt::skip]
const PEOPLE: [Person; 20] = [
    person("Zoë", "Ångström", ["Zoe.Angstrom+beta@Example.COM", "zoe.angstrom+beta@example.com", "ZOE.ANGSTROM+beta@example.com"], "+46 70 123 45 67", "+46701234567"),
    person("José", "Álvarez", ["Jose.Alvarez@Correo.es", "jose.alvarez@correo.es", "JOSE.ALVAREZ@CORREO.ES"], "+34 612 34 56 78", "+34612345678"),
    person("Siobhán", "Ó Súilleabháin", ["siobhan.osullivan+news@mail.ie", "Siobhan.OSullivan+news@mail.ie", "siobhan.osullivan+news@MAIL.IE"], "+353 85 123 4567", "+353851234567"),
    person("Łukasz", "Żółć", ["Lukasz.Zolc@Poczta.pl", "lukasz.zolc@poczta.pl", "Lukasz.Zolc@poczta.PL"], "+48 512 345 678", "+48512345678"),
    person("Minh Khai", "Nguyễn Thị", ["minhkhai.nguyen@Example.vn", "MinhKhai.Nguyen@example.vn", "minhkhai.nguyen@example.VN"], "+84 91 234 56 78", "+84912345678"),
    person("太郎", "山田", ["taro.yamada+shop@Example.jp", "Taro.Yamada+shop@example.jp", "taro.yamada+shop@example.jp"], "+81 90-1234-5678", "+819012345678"),
    person("Mustafa", "Çelik", ["Mustafa.Celik@Posta.com.tr", "mustafa.celik@posta.com.tr", "MUSTAFA.CELIK@posta.com.tr"], "+90 532 123 45 67", "+905321234567"),
    person("Олена", "Коваль", ["olena.koval@Ukr.net", "Olena.Koval@ukr.net", "olena.koval@UKR.NET"], "+380 50 123 4567", "+380501234567"),
    person("Priya", "Raghunathan", ["Priya.R+work@Example.in", "priya.r+work@example.in", "PRIYA.R+WORK@example.in"], "+91 98765 43210", "+919876543210"),
    person("Thandiwe", "Nkosi", ["thandiwe.nkosi@Example.co.za", "Thandiwe.Nkosi@example.co.za", "thandiwe.nkosi@example.co.za"], "+27 82 123 4567", "+27821234567"),
    person("Chloé", "Lefèvre", ["Chloe.Lefevre@Orange.fr", "chloe.lefevre@orange.fr", "CHLOE.LEFEVRE@orange.fr"], "+33 6 12 34 56 78", "+33612345678"),
    person("Jürgen", "Weiß", ["juergen.weiss+crm@Web.de", "Juergen.Weiss+crm@web.de", "juergen.weiss+crm@WEB.DE"], "+49 151 23456789", "+4915123456789"),
    person("Min-jun", "Kim", ["MinJun.Kim@Example.kr", "minjun.kim@example.kr", "MINJUN.KIM@example.kr"], "+82 10-1234-5678", "+821012345678"),
    person("Björn", "Lindqvist", ["bjorn.lindqvist@Example.no", "Bjorn.Lindqvist@example.no", "bjorn.lindqvist@example.no"], "+47 412 34 567", "+4741234567"),
    person("Giulia", "D'Angelo", ["Giulia.DAngelo@Libero.it", "giulia.dangelo@libero.it", "GIULIA.DANGELO@libero.it"], "+39 312 345 6789", "+393123456789"),
    person("María José", "Núñez", ["mariajose.nunez+promo@Example.mx", "MariaJose.Nunez+promo@example.mx", "mariajose.nunez+promo@example.mx"], "+52 55 1234 5678", "+525512345678"),
    person("Aarav", "Mehta", ["Aarav.Mehta@Example.com", "aarav.mehta@example.com", "AARAV.MEHTA@EXAMPLE.COM"], "(415) 555-2671", "+14155552671"),
    person("Lucas", "Souza", ["lucas.souza@Example.com.br", "Lucas.Souza@example.com.br", "lucas.souza@example.com.br"], "+55 11 91234-5678", "+5511912345678"),
    person("Emma", "van der Berg", ["Emma.vanderBerg@Example.nl", "emma.vanderberg@example.nl", "EMMA.VANDERBERG@example.nl"], "+31 6 12345678", "+31612345678"),
    person("Noah", "O'Brien", ["noah.obrien+x@Example.com.au", "Noah.OBrien+x@example.com.au", "noah.obrien+x@example.com.au"], "+61 412 345 678", "+61412345678"),
];

fn full_name(p: &Person) -> String {
    format!("{} {}", p.first, p.last)
}

/// A Typeform `form_response` as the sample in the sandbox, answered by `p`.
fn typeform(i: usize, p: &Person, at: DateTime<Utc>) -> String {
    json!({
        "event_id": format!("01JDTF{i:020}"),
        "event_type": "form_response",
        "form_response": {
            "form_id": "lT4Z3j",
            "token": format!("tok{i:08}"),
            "landed_at": (at - TimeDelta::seconds(90)).to_rfc3339(),
            "submitted_at": at.to_rfc3339(),
            "hidden": { "utm_source": "newsletter" },
            "answers": [
                { "type": "text", "text": full_name(p), "field": { "id": "JwWggjAKtOkA", "type": "short_text", "ref": "full_name" } },
                { "type": "email", "email": p.emails[0], "field": { "id": "SMEUb7VJz92Q", "type": "email", "ref": "email" } },
                { "type": "phone_number", "phone_number": p.phone, "field": { "id": "pn48RmPazVdM", "type": "phone_number", "ref": "phone" } }
            ]
        }
    })
    .to_string()
}

/// Our app's `contact.updated` (Standard Webhooks) for `p`, with its own user id.
fn standard(i: usize, p: &Person, at: DateTime<Utc>) -> String {
    json!({
        "type": "contact.updated",
        "timestamp": at.to_rfc3339(),
        "data": {
            "id": format!("usr_{:04}", 7000 + i),
            "email": p.emails[1],
            "phone": p.phone,
            "name": full_name(p),
            "organization": "Relay Customers Ltd",
            "properties": { "plan": "pro" }
        }
    })
    .to_string()
}

/// A HubSpot webhook request: the contact created in the CRM, then one event per property.
fn hubspot(i: usize, p: &Person, at: DateTime<Utc>) -> String {
    let object = 5100 + i as u64;
    let ms = at.timestamp_millis();
    let event = |n: u64, kind: &str, extra: Value| {
        let mut e = json!({
            "eventId": 3_900_000_000u64 + object * 10 + n,
            "subscriptionId": 2200413,
            "portalId": 62515,
            "appId": 1160452,
            "occurredAt": ms + i64::try_from(n).unwrap() * 200,
            "subscriptionType": kind,
            "attemptNumber": 0,
            "objectId": object,
            "changeSource": "CRM_UI",
            "sourceId": "userId:100"
        });
        if let (Value::Object(e), Value::Object(extra)) = (&mut e, extra) {
            e.extend(extra);
        }
        e
    };
    let change = |n, name: &str, value: &str| {
        event(
            n,
            "contact.propertyChange",
            json!({"propertyName": name, "propertyValue": value}),
        )
    };
    json!([
        event(0, "contact.creation", json!({"changeFlag": "CREATED"})),
        change(1, "email", p.emails[2]),
        change(2, "firstname", p.first),
        change(3, "lastname", p.last),
        change(4, "phone", p.phone),
    ])
    .to_string()
}

async fn post(p: &Pipeline, source: &str, body: String, delivery: Option<String>) -> StatusCode {
    let request = webhooks::signed_with(
        source,
        &webhooks::secret(source),
        &body,
        Utc::now(),
        delivery.as_deref(),
    );
    relay_shared::lambda::webhook_service(p.app.clone())
        .oneshot(request)
        .await
        .map(|r| r.status())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn text<'a>(record: &'a serde_json::Map<String, Value>, field: &str) -> Option<&'a str> {
    record.get(field).and_then(Value::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_people_from_three_sources_are_twenty_records_at_each_vendor() {
    let p = Pipeline::start(Faults::default(), Duration::from_secs(30)).await;
    let signed_up = Utc::now() - TimeDelta::minutes(30);
    let mut posts = Vec::new();
    for (i, person) in PEOPLE.iter().enumerate() {
        posts.push(("typeform", typeform(i, person, signed_up), None));
        posts.push((
            "standard",
            standard(i, person, signed_up + TimeDelta::minutes(5)),
            Some(format!("msg_2Kx{i:04}")),
        ));
        posts.push((
            "hubspot",
            hubspot(i, person, signed_up + TimeDelta::minutes(10)),
            None,
        ));
    }
    let statuses: Vec<StatusCode> = futures::stream::iter(
        posts
            .into_iter()
            .map(|(source, body, id)| post(&p, source, body, id)),
    )
    .buffer_unordered(30)
    .collect()
    .await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::ACCEPTED),
        "every request accepted: {statuses:?}"
    );
    assert!(p.drain(Duration::from_secs(120)).await, "the queue drains");
    assert!(p.dead_letters.is_empty(), "nothing dead-lettered");

    let w = p.vendors.world();
    eprintln!(
        "records: Hood {} (creates {}), Channel.io {} (upserts {}), Chatwoot {} (creates {})",
        w.hood_profiles.len(),
        w.hood_creates,
        w.channel_users.len(),
        w.channel_upserts,
        w.chatwoot_contacts.len(),
        w.chatwoot_creates
    );
    assert_eq!(w.hood_profiles.len(), 20, "one Hood profile per person");
    assert_eq!(w.channel_users.len(), 20, "one Channel.io user per person");
    assert_eq!(
        w.chatwoot_contacts.len(),
        20,
        "one Chatwoot contact per person"
    );

    for person in &PEOPLE {
        // The three spellings are one address once normalised (lower-cased).
        let email = person.emails[1].to_lowercase();
        assert!(person.emails.iter().all(|e| e.to_lowercase() == email));
        let email = email.as_str();
        let name = full_name(person);
        let hood: Vec<_> = w
            .hood_profiles
            .values()
            .filter(|r| text(r, "email") == Some(email))
            .collect();
        assert_eq!(hood.len(), 1, "{name}: one Hood profile");
        assert_eq!(text(hood[0], "full_name"), Some(name.as_str()), "Hood name");
        assert_eq!(
            text(hood[0], "mobile_phone_number"),
            Some(person.e164),
            "Hood phone of {name}"
        );

        let channel: Vec<_> = w
            .channel_users
            .iter()
            .filter(|(_, u)| text(u, "email") == Some(email))
            .collect();
        assert_eq!(channel.len(), 1, "{name}: one Channel.io user");
        let (member, user) = channel[0];
        assert_eq!(text(user, "name"), Some(name.as_str()), "Channel.io name");
        assert_eq!(text(user, "mobileNumber"), Some(person.e164));
        // The memberId is the person id: no e-mail, phone or source key in the URL.
        assert!(
            member.len() == 33
                && member.starts_with('p')
                && member[1..].bytes().all(|b| b.is_ascii_hexdigit()),
            "memberId {member} is a person id"
        );

        let chatwoot: Vec<_> = w
            .chatwoot_contacts
            .values()
            .filter(|c| text(c, "email") == Some(email))
            .collect();
        assert_eq!(chatwoot.len(), 1, "{name}: one Chatwoot contact");
        assert_eq!(text(chatwoot[0], "name"), Some(name.as_str()));
        assert_eq!(text(chatwoot[0], "phone_number"), Some(person.e164));
        assert_eq!(
            text(chatwoot[0], "identifier"),
            Some(member.as_str()),
            "Chatwoot identifier is the same person id"
        );
    }
    let members: BTreeSet<&String> = w.channel_users.keys().collect();
    assert_eq!(members.len(), 20);
}

/// A later HubSpot edit carries only the changed property and the objectId — no e-mail.
/// The objectId was attached to the person by the first HubSpot request, so the edit finds
/// the person's records (no refused Hood create, no dead letter).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_later_hubspot_edit_without_an_email_reaches_the_same_records() {
    let p = Pipeline::start(Faults::default(), Duration::from_secs(30)).await;
    let at = Utc::now() - TimeDelta::minutes(20);
    let person = &PEOPLE[11];
    assert_eq!(
        post(&p, "hubspot", hubspot(11, person, at), None).await,
        StatusCode::ACCEPTED
    );
    assert!(p.drain(Duration::from_secs(30)).await);
    let edit = json!([{
        "eventId": 3_999_000_001u64, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452,
        "occurredAt": (at + TimeDelta::minutes(5)).timestamp_millis(),
        "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 5111,
        "propertyName": "lastname", "propertyValue": "Weiß-Schmidt",
        "changeSource": "CRM_UI", "sourceId": "userId:100"
    }, {
        "eventId": 3_999_000_002u64, "subscriptionId": 2200413, "portalId": 62515, "appId": 1160452,
        "occurredAt": (at + TimeDelta::minutes(5)).timestamp_millis() + 10,
        "subscriptionType": "contact.propertyChange", "attemptNumber": 0, "objectId": 5111,
        "propertyName": "firstname", "propertyValue": "Jürgen",
        "changeSource": "CRM_UI", "sourceId": "userId:100"
    }])
    .to_string();
    assert_eq!(post(&p, "hubspot", edit, None).await, StatusCode::ACCEPTED);
    assert!(p.drain(Duration::from_secs(30)).await);
    assert!(p.dead_letters.is_empty(), "nothing dead-lettered");
    let w = p.vendors.world();
    assert_eq!(w.hood_profiles.len(), 1);
    assert_eq!(w.channel_users.len(), 1);
    assert_eq!(w.chatwoot_contacts.len(), 1);
    let hood = w.hood_profiles.values().next().unwrap();
    assert_eq!(text(hood, "full_name"), Some("Jürgen Weiß-Schmidt"));
    assert_eq!(text(hood, "email"), Some("juergen.weiss+crm@web.de"));
    let user = w.channel_users.values().next().unwrap();
    assert_eq!(text(user, "name"), Some("Jürgen Weiß-Schmidt"));
}
