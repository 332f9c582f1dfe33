//! Coalescing: several changes of one contact that are pending together become one change,
//! so each vendor gets one call with all of them instead of one call each.
//!
//! The result must end at a vendor exactly where its members delivered one by one (in any
//! order) would. That holds because every field keeps the version of the change it came
//! from ([`ContactChange::versions`]) and planning ranks each field by its own version
//! (this module's parent, `changed`): merging `e1 (t1, name)` with `e3 (t3, email)` keeps
//! the name at t1, so a late `e2 (t2, name)` still wins over it, as it would have.

use std::collections::BTreeMap;

use crate::mapping::CanonicalField;
use crate::mapping::vendor::canonical_value;
use crate::model::{ChangeKind, Contact, ContactChange};
use crate::plan::fingerprint;

/// One change from `first` and `others`, changes of one contact (one person).
///
/// * Each canonical field takes its value from the newest change that sets it, ranked as
///   planning ranks it: by the version of the change that set it, then — at equal
///   versions, different values — by the greater fingerprint of the value. Custom fields
///   are taken one by one. The field keeps that version.
/// * The change happened when its newest member did (its event: source, id, time); it is
///   a `created` change if any member was (`signup` likewise), else the newest one's kind.
/// * Deletions are not for coalescing (the callers keep them apart, so "edit, delete,
///   re-create" keeps its order); one given here is coalesced as any change.
pub fn coalesce(
    first: ContactChange,
    others: impl IntoIterator<Item = ContactChange>,
) -> ContactChange {
    let mut members: Vec<ContactChange> = others.into_iter().collect();
    if members.is_empty() {
        return first;
    }
    members.push(first);
    // Oldest first; a stable sort keeps the given order among equal times.
    members.sort_by_key(|c| c.event.occurred_at);
    let created = members.iter().any(|c| c.event.kind == ChangeKind::Created);
    let signup = members.iter().any(|c| c.event.kind == ChangeKind::Signup);
    // Not empty: `first` is among them.
    let mut out = members.remove(0);
    let mut versions: BTreeMap<String, i64> = set_fields(&out.contact)
        .into_iter()
        .map(|field| {
            let name = field.to_string();
            let version = out.version_of(&name);
            (name, version)
        })
        .collect();
    for member in members {
        for field in set_fields(&member.contact) {
            let name = field.to_string();
            let theirs = member.version_of(&name);
            let wins = match versions.get(&name) {
                None => true,
                Some(&ours) if theirs != ours => theirs > ours,
                Some(_) => value_rank(&member.contact, &field) > value_rank(&out.contact, &field),
            };
            if wins {
                copy_field(&member.contact, &mut out.contact, &field);
                versions.insert(name, theirs);
            }
        }
        out.event = member.event;
    }
    if created {
        out.event.kind = ChangeKind::Created;
    } else if signup {
        out.event.kind = ChangeKind::Signup;
    }
    let at = out.version();
    versions.retain(|_, version| *version != at);
    out.versions = versions;
    out
}

/// The tie-break between two values at one version: planning's (the greater fingerprint).
fn value_rank(contact: &Contact, field: &CanonicalField) -> Option<String> {
    canonical_value(contact, field).map(|value| fingerprint(&value))
}

/// The canonical fields `contact` sets.
fn set_fields(contact: &Contact) -> Vec<CanonicalField> {
    let mut fields = vec![CanonicalField::Key];
    let present = [
        (contact.person.is_some(), CanonicalField::Person),
        (contact.email.is_some(), CanonicalField::Email),
        (contact.phone.is_some(), CanonicalField::Phone),
        (contact.full_name.is_some(), CanonicalField::FullName),
        (contact.organization.is_some(), CanonicalField::Organization),
        (contact.tags.is_some(), CanonicalField::Tags),
        (contact.lists.is_some(), CanonicalField::Lists),
        (
            contact.consent.email.is_some(),
            CanonicalField::ConsentEmail,
        ),
        (
            contact.consent.texting.is_some(),
            CanonicalField::ConsentTexting,
        ),
    ];
    fields.extend(present.into_iter().filter_map(|(set, f)| set.then_some(f)));
    fields.extend(contact.custom.keys().cloned().map(CanonicalField::Custom));
    fields
}

/// Sets `field` of `into` to its value in `from`.
fn copy_field(from: &Contact, into: &mut Contact, field: &CanonicalField) {
    match field {
        CanonicalField::Key => into.key = from.key.clone(),
        CanonicalField::Person => into.person.clone_from(&from.person),
        CanonicalField::Email => into.email.clone_from(&from.email),
        CanonicalField::Phone => into.phone.clone_from(&from.phone),
        CanonicalField::FullName => into.full_name.clone_from(&from.full_name),
        CanonicalField::Organization => into.organization.clone_from(&from.organization),
        CanonicalField::Tags => into.tags.clone_from(&from.tags),
        CanonicalField::Lists => into.lists.clone_from(&from.lists),
        CanonicalField::ConsentEmail => into.consent.email = from.consent.email,
        CanonicalField::ConsentTexting => into.consent.texting = from.consent.texting,
        CanonicalField::Custom(name) => {
            if let Some(value) = from.custom.get(name) {
                into.custom.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;

    use super::*;
    use crate::model::{ContactKey, Email, SyncEvent};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_764_000_000_000 + ms).unwrap_or_default()
    }

    fn change(
        id: &str,
        ms: i64,
        kind: ChangeKind,
        edit: impl FnOnce(&mut Contact),
    ) -> ContactChange {
        let mut contact = Contact::new(ContactKey::external("hubspot", "901").unwrap());
        edit(&mut contact);
        ContactChange::new(
            SyncEvent {
                source: "hubspot".into(),
                event_id: id.into(),
                occurred_at: at(ms),
                kind,
            },
            contact,
        )
    }

    #[test]
    fn each_field_keeps_the_value_and_version_of_the_newest_change_that_set_it() {
        let e1 = change("e1", 1, ChangeKind::Signup, |c| {
            c.full_name = Some("Zoë Ångström".into());
            c.custom.insert("plan".into(), json!("free"));
        });
        let e2 = change("e2", 2, ChangeKind::Updated, |c| {
            c.custom.insert("plan".into(), json!("pro"));
            c.custom.insert("utm_source".into(), json!("newsletter"));
        });
        let e3 = change("e3", 3, ChangeKind::Updated, |c| {
            c.email = Some(Email::parse("Zoe+News@Example.COM").unwrap());
        });
        // In any order.
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let all = [e1.clone(), e2.clone(), e3.clone()];
            let [a, b, c] = order.map(|i| all[i].clone());
            let out = coalesce(a, [b, c]);
            assert_eq!(out.event.event_id, "e3");
            assert_eq!(out.event.kind, ChangeKind::Signup, "a signup among them");
            assert_eq!(out.contact.full_name.as_deref(), Some("Zoë Ångström"));
            assert_eq!(out.contact.custom["plan"], json!("pro"));
            assert_eq!(out.contact.custom["utm_source"], json!("newsletter"));
            assert_eq!(out.contact.email, e3.contact.email);
            assert_eq!(out.version_of("full_name"), at(1).timestamp_millis());
            assert_eq!(out.version_of("custom.plan"), at(2).timestamp_millis());
            assert_eq!(out.version_of("email"), at(3).timestamp_millis());
            // Only the fields older than the change are listed.
            assert_eq!(
                out.versions.keys().collect::<Vec<_>>(),
                ["custom.plan", "custom.utm_source", "full_name"]
            );
        }
    }

    #[test]
    fn coalescing_coalesced_changes_keeps_their_fields_versions() {
        let inner = coalesce(
            change("e1", 1, ChangeKind::Updated, |c| {
                c.full_name = Some("Ann".into())
            }),
            [change("e3", 3, ChangeKind::Updated, |c| {
                c.organization = Some("Acme".into())
            })],
        );
        // A change between the two that set the name wins over the inner one's name.
        let between = change("e2", 2, ChangeKind::Updated, |c| {
            c.full_name = Some("Anne".into())
        });
        let out = coalesce(inner, [between]);
        assert_eq!(out.contact.full_name.as_deref(), Some("Anne"));
        assert_eq!(out.version_of("full_name"), at(2).timestamp_millis());
        assert_eq!(out.event.event_id, "e3");
        // A change older than the inner one's name loses.
        let older = change("e0", 0, ChangeKind::Updated, |c| {
            c.full_name = Some("A.".into())
        });
        let out = coalesce(out, [older]);
        assert_eq!(out.contact.full_name.as_deref(), Some("Anne"));
    }

    #[test]
    fn a_tie_goes_to_the_greater_fingerprint_whatever_the_order() {
        let a = change("a", 5, ChangeKind::Updated, |c| {
            c.full_name = Some("Ann".into())
        });
        let b = change("b", 5, ChangeKind::Updated, |c| {
            c.full_name = Some("Anne".into())
        });
        let one = coalesce(a.clone(), [b.clone()]);
        let other = coalesce(b, [a]);
        assert_eq!(one.contact.full_name, other.contact.full_name);
        let greater = [json!("Ann"), json!("Anne")]
            .into_iter()
            .max_by_key(fingerprint)
            .unwrap_or_default();
        assert_eq!(one.contact.full_name.as_deref(), greater.as_str());
    }

    #[test]
    fn one_change_is_itself() {
        let only = change("e1", 1, ChangeKind::Updated, |c| {
            c.full_name = Some("Ann".into())
        });
        assert_eq!(coalesce(only.clone(), []), only);
    }
}
