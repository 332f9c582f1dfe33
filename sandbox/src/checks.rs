//! The checks every sandbox vendor shares: credentials, content type, JSON shape, field
//! types, e-mail and E.164 formats. A failed check is a [`Refusal`], which each vendor
//! renders in its own error shape.

use http::{HeaderMap, StatusCode, header};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

use super::record::Rule;
use relay_shared::model::PhoneE164;

/// Why a request was refused: status, a message naming fields (never values), the rule
/// broken (`None` for answers that depend on state, such as an unknown id), and, for
/// Chatwoot's 422, the offending attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub message: String,
    pub rule: Option<Rule>,
    pub attributes: Vec<String>,
}

impl Refusal {
    /// A refusal for breaking `rule`.
    pub fn broke(status: StatusCode, rule: Rule, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            rule: Some(rule),
            attributes: Vec::new(),
        }
    }

    /// 400 for breaking `rule`.
    pub fn bad(rule: Rule, message: impl Into<String>) -> Self {
        Self::broke(StatusCode::BAD_REQUEST, rule, message)
    }

    /// An answer about state (404, 409, 422 conflicts): not a violation.
    pub fn state(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            rule: None,
            attributes: Vec::new(),
        }
    }

    /// Adds the attributes Chatwoot lists in a 422.
    pub fn with_attributes(mut self, attributes: &[&str]) -> Self {
        self.attributes = attributes.iter().map(|a| (*a).to_owned()).collect();
        self
    }
}

/// Compares a presented credential with the expected one in constant time.
pub(crate) fn credential_matches(presented: Option<&str>, expected: &SecretString) -> bool {
    presented.is_some_and(|p| bool::from(p.as_bytes().ct_eq(expected.expose_secret().as_bytes())))
}

/// The value of header `name`, if present and text.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// True when `Content-Type` is `application/json` (parameters such as `charset` allowed).
pub(crate) fn is_json_content_type(headers: &HeaderMap) -> bool {
    header_text(headers, header::CONTENT_TYPE.as_str()).is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
    })
}

/// The body as a JSON object, after checking the content type (415 when it is not
/// `application/json`, 400 when the body is not a JSON object).
pub(crate) fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if !is_json_content_type(headers) {
        return Err(Refusal::broke(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rule::ContentType,
            "The request body must be sent with Content-Type: application/json.",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Refusal::bad(
            Rule::MalformedJson,
            "The request body must be a JSON object.",
        )),
        Err(_) => Err(Refusal::bad(
            Rule::MalformedJson,
            "The request body is not valid JSON.",
        )),
    }
}

/// Refuses the first key of `map` not in `allowed`.
pub(crate) fn only_fields(map: &Map<String, Value>, allowed: &[&str]) -> Result<(), Refusal> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Refusal::bad(
            Rule::UnknownField,
            format!("Unknown field `{}`.", printable(k)),
        )),
        None => Ok(()),
    }
}

/// A field name safe to echo: field names are ours or the client's, never personal data,
/// but an unknown key could be anything, so it is cut and kept to visible ASCII.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect()
}

/// `map[key]` as a string: `Ok(None)` when absent, a refusal when present but not a string.
pub(crate) fn opt_string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, Refusal> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Refusal::bad(
            Rule::FieldType,
            format!("Field `{key}` must be a string."),
        )),
    }
}

/// `map[key]` as an object, when present.
pub(crate) fn opt_object<'a>(
    map: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a Map<String, Value>>, Refusal> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(Refusal::bad(
            Rule::FieldType,
            format!("Field `{key}` must be an object."),
        )),
    }
}

/// `map[key]` as a boolean, when present.
pub(crate) fn opt_bool(map: &Map<String, Value>, key: &str) -> Result<Option<bool>, Refusal> {
    match map.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Refusal::bad(
            Rule::FieldType,
            format!("Field `{key}` must be true or false."),
        )),
    }
}

/// `map[key]` as an array of strings, when present.
pub(crate) fn opt_strings(
    map: &Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, Refusal> {
    let wrong = || {
        Refusal::bad(
            Rule::FieldType,
            format!("Field `{key}` must be an array of strings."),
        )
    };
    match map.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(wrong))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong()),
    }
}

/// True for a well-formed e-mail address.
pub(crate) fn is_email(s: &str) -> bool {
    email_address::EmailAddress::is_valid(s)
}

/// True for an E.164 number: `+`, a non-zero first digit, 8 to 15 digits (the rule the
/// relay's model keeps; Hood and Channel.io document "E.164" without more detail).
pub(crate) fn is_e164(s: &str) -> bool {
    PhoneE164::is_e164(s)
}

/// Chatwoot's own contact phone rule, `/\A\+[1-9]\d{1,14}\z/`.
pub(crate) fn is_chatwoot_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// The e-mail check of a field: a refusal naming the field when the value is not one.
pub(crate) fn check_email(key: &str, value: &str) -> Result<(), Refusal> {
    if is_email(value) {
        Ok(())
    } else {
        Err(Refusal::bad(
            Rule::EmailFormat,
            format!("Field `{key}` is not a valid e-mail address."),
        ))
    }
}

/// The E.164 check of a field.
pub(crate) fn check_e164(key: &str, value: &str) -> Result<(), Refusal> {
    if is_e164(value) {
        Ok(())
    } else {
        Err(Refusal::bad(
            Rule::PhoneFormat,
            format!("Field `{key}` must be a phone number in E.164 format."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn content_type_essence_is_compared() {
        let mut h = HeaderMap::new();
        assert!(!is_json_content_type(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json_content_type(&h));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_content_type(&h));
    }

    #[test]
    fn phone_rules() {
        assert!(is_e164("+14155552671"));
        assert!(!is_e164("14155552671"));
        assert!(!is_e164("+1 415 555 2671"));
        assert!(!is_e164("+0155552671"));
        assert!(is_chatwoot_e164("+12"));
        assert!(!is_chatwoot_e164("+1234567890123456"));
        assert!(!is_chatwoot_e164("+4930-901820"));
    }

    #[test]
    fn unknown_field_names_are_cut_and_cleaned() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"email": "a@b.c", "bad key\n": 1}"#).expect("json");
        let err = only_fields(&map, &["email"]).expect_err("unknown");
        assert_eq!(err.message, "Unknown field `badkey`.");
        assert_eq!(err.rule, Some(Rule::UnknownField));
    }

    #[test]
    fn credentials_compare_exactly() {
        let s = SecretString::from("tok");
        assert!(credential_matches(Some("tok"), &s));
        assert!(!credential_matches(Some("tok "), &s));
        assert!(!credential_matches(None, &s));
    }
}
