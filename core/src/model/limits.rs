//! The explicit limits on what one delivery and one contact may carry.
//!
//! None of the vendor pages (`../shared/vendor-docs/`) states a length for names, company
//! names, custom property values or tags (only Channel.io's 20 tags per user and its
//! forbidden characters), so the relay applies one conservative default for every vendor:
//! what real forms and CRMs produce fits with room to spare, and a 40 KB "name" never
//! reaches a vendor. A value over its limit costs only itself: text is cut (on a character
//! boundary) and the change carries a `<field>_truncated` warning; a tag or contact id that
//! is too long is dropped with `<field>_invalid`.

use serde_json::Value;

/// Events one delivery may carry (HubSpot documents at most 100 per request).
pub const MAX_EVENTS_PER_DELIVERY: usize = 100;

/// A full name, in characters.
pub const MAX_NAME_CHARS: usize = 255;

/// A company or organisation name, in characters.
pub const MAX_ORGANIZATION_CHARS: usize = 255;

/// A custom property's text value (or each text item of a list value), in characters.
pub const MAX_CUSTOM_TEXT_CHARS: usize = 1_000;

/// Items of a custom property's list value.
pub const MAX_CUSTOM_ITEMS: usize = 100;

/// One tag, in characters (longer ones are dropped: a cut tag is a different tag).
pub const MAX_TAG_CHARS: usize = 50;

/// Tags per contact: Channel.io's documented limit (the first ones are kept).
pub const MAX_TAGS: usize = crate::model::tags::MAX_TAGS;

/// Hood list ids per contact.
pub const MAX_LIST_ITEMS: usize = 100;

/// A sender's own contact id (it becomes Channel.io's memberId and Chatwoot's identifier).
pub const MAX_KEY_CHARS: usize = 255;

/// `text` cut to at most `max` characters, and whether it was cut.
pub fn cut(text: String, max: usize) -> (String, bool) {
    match text.char_indices().nth(max) {
        Some((at, _)) => (text[..at].to_string(), true),
        None => (text, false),
    }
}

/// A custom property value within the limits, and whether it was cut; `None` for a value
/// that cannot be a custom property (an object, or a list holding objects or lists).
pub fn cut_custom(value: Value) -> Option<(Value, bool)> {
    match value {
        Value::Object(_) => None,
        Value::Array(items) => {
            let mut was_cut = items.len() > MAX_CUSTOM_ITEMS;
            let mut out = Vec::with_capacity(items.len().min(MAX_CUSTOM_ITEMS));
            for item in items.into_iter().take(MAX_CUSTOM_ITEMS) {
                match item {
                    Value::Object(_) | Value::Array(_) => return None,
                    scalar => {
                        let (v, c) = cut_scalar(scalar);
                        was_cut |= c;
                        out.push(v);
                    }
                }
            }
            Some((Value::Array(out), was_cut))
        }
        scalar => Some(cut_scalar(scalar)),
    }
}

fn cut_scalar(value: Value) -> (Value, bool) {
    match value {
        Value::String(s) => {
            let (s, c) = cut(s, MAX_CUSTOM_TEXT_CHARS);
            (Value::String(s), c)
        }
        other => (other, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cuts_on_character_boundaries() {
        assert_eq!(cut("Zoë Åström".into(), 3), ("Zoë".into(), true));
        assert_eq!(cut("김민준".into(), 3), ("김민준".into(), false));
        assert_eq!(cut("山田 太郎".into(), 2), ("山田".into(), true));
        let (long, was_cut) = cut("a".repeat(40_000), MAX_NAME_CHARS);
        assert!(was_cut);
        assert_eq!(long.chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn custom_values_are_bounded() {
        assert_eq!(cut_custom(json!("pro")), Some((json!("pro"), false)));
        assert_eq!(cut_custom(json!(42)), Some((json!(42), false)));
        assert_eq!(cut_custom(json!({"a": 1})), None);
        assert_eq!(cut_custom(json!(["a", ["b"]])), None);
        let (v, was_cut) = cut_custom(json!("x".repeat(5_000))).unwrap();
        assert!(was_cut);
        assert_eq!(v.as_str().unwrap().len(), MAX_CUSTOM_TEXT_CHARS);
        let many: Vec<Value> = (0..150).map(|i| json!(i)).collect();
        let (v, was_cut) = cut_custom(Value::Array(many)).unwrap();
        assert!(was_cut);
        assert_eq!(v.as_array().unwrap().len(), MAX_CUSTOM_ITEMS);
    }
}
