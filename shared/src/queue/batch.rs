//! Checking a batch against SQS's rules and cutting it into calls. Both adapters use this,
//! so a message SQS would refuse is refused locally too, with the same per-entry report.

use std::collections::HashMap;

use super::{
    FailedEntry, MAX_ATTRIBUTES, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_DELAY, OutboundMessage,
};

/// The valid entries cut into SQS-sized chunks (input order kept), and the entries refused
/// before sending.
#[derive(Debug)]
pub struct Plan<'a> {
    /// Each chunk is one `SendMessageBatch` call.
    pub chunks: Vec<Vec<&'a OutboundMessage>>,
    /// Entries that break SQS's rules; never sent.
    pub refused: Vec<FailedEntry>,
}

/// Validates and chunks `messages`.
#[must_use]
pub fn plan(messages: &[OutboundMessage]) -> Plan<'_> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for m in messages {
        *seen.entry(m.id.as_str()).or_default() += 1;
    }
    let mut refused = Vec::new();
    let mut chunks: Vec<Vec<&OutboundMessage>> = Vec::new();
    let mut current: Vec<&OutboundMessage> = Vec::new();
    let mut current_bytes = 0;
    for m in messages {
        let problem = if seen.get(m.id.as_str()).copied().unwrap_or_default() > 1 {
            Some((
                "BatchEntryIdsNotDistinct",
                "entry id used more than once in the batch",
            ))
        } else {
            check(m)
        };
        if let Some((code, message)) = problem {
            refused.push(FailedEntry {
                id: m.id.clone(),
                code: code.into(),
                message: message.into(),
                sender_fault: true,
            });
            continue;
        }
        let size = m.size();
        if current.len() == MAX_BATCH_ENTRIES || current_bytes + size > MAX_BATCH_BYTES {
            chunks.push(std::mem::take(&mut current));
            current_bytes = 0;
        }
        current.push(m);
        current_bytes += size;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    Plan { chunks, refused }
}

fn check(m: &OutboundMessage) -> Option<(&'static str, &'static str)> {
    let id_ok = !m.id.is_empty()
        && m.id.len() <= 80
        && m.id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !id_ok {
        return Some((
            "InvalidBatchEntryId",
            "entry id must be 1-80 of [A-Za-z0-9_-]",
        ));
    }
    if m.body.is_empty() || !m.body.chars().all(allowed_char) {
        return Some((
            "InvalidMessageContents",
            "body is empty or has characters SQS refuses",
        ));
    }
    if m.size() > MAX_BATCH_BYTES {
        return Some(("MessageTooLarge", "message is larger than 256 KiB"));
    }
    if m.delay.is_some_and(|d| d > MAX_DELAY) {
        return Some(("InvalidParameterValue", "delay is longer than 15 minutes"));
    }
    if m.attributes.len() > MAX_ATTRIBUTES || !m.attributes.iter().all(|(n, v)| attribute_ok(n, v))
    {
        return Some((
            "InvalidParameterValue",
            "attributes: at most 10, names [A-Za-z0-9_.-]{1,256}, values non-empty",
        ));
    }
    None
}

/// SQS accepts `#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`.
fn allowed_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

fn attribute_ok(name: &str, value: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.")
        && !value.is_empty()
        && value.chars().all(allowed_char)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn msg(id: &str, body_len: usize) -> OutboundMessage {
        OutboundMessage::new(id, "x".repeat(body_len))
    }

    #[test]
    fn twenty_five_small_messages_make_10_10_5() {
        let messages: Vec<_> = (0..25).map(|i| msg(&format!("m{i}"), 10)).collect();
        let plan = plan(&messages);
        assert!(plan.refused.is_empty());
        let sizes: Vec<_> = plan.chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);
        let order: Vec<_> = plan
            .chunks
            .iter()
            .flatten()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(
            order,
            messages.iter().map(|m| m.id.as_str()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn byte_limit_cuts_before_the_entry_limit() {
        // 100 KiB each: two fit in 256 KiB, a third does not.
        let messages: Vec<_> = (0..5).map(|i| msg(&format!("m{i}"), 100 * 1024)).collect();
        let sizes: Vec<_> = plan(&messages).chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [2, 2, 1]);
        // Exactly 256 KiB fits alone.
        let exact = [msg("a", MAX_BATCH_BYTES), msg("b", 1)];
        assert_eq!(
            plan(&exact).chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 1]
        );
    }

    #[test]
    fn attributes_count_towards_the_size() {
        let mut m = msg("a", MAX_BATCH_BYTES - 10);
        m.attributes.insert("vendor".into(), "hood".into()); // 6 + 6 + 4 = 16 bytes
        assert_eq!(m.size(), MAX_BATCH_BYTES + 6);
        assert_eq!(plan(&[m]).refused[0].code, "MessageTooLarge");
    }

    #[test]
    fn invalid_entries_are_refused_and_the_rest_kept() {
        let mut delayed = msg("late", 1);
        delayed.delay = Some(Duration::from_secs(901));
        let mut ok_delay = msg("ok_delay", 1);
        ok_delay.delay = Some(Duration::from_secs(900));
        let mut bad_attr = msg("attr", 1);
        bad_attr.attributes.insert("AWS.trace".into(), "x".into());
        let messages = vec![
            msg("ok", 1),
            msg("dup", 1),
            msg("dup", 1),
            msg("bad id!", 1),
            msg(&"x".repeat(81), 1),
            msg("empty", 0),
            OutboundMessage::new("nul", "a\u{0}b"),
            msg("big", MAX_BATCH_BYTES + 1),
            delayed,
            ok_delay,
            bad_attr,
        ];
        let plan = plan(&messages);
        let refused: Vec<_> = plan
            .refused
            .iter()
            .map(|f| (f.id.as_str(), f.code.as_str()))
            .collect();
        let long_id = "x".repeat(81);
        assert_eq!(
            refused,
            [
                ("dup", "BatchEntryIdsNotDistinct"),
                ("dup", "BatchEntryIdsNotDistinct"),
                ("bad id!", "InvalidBatchEntryId"),
                (long_id.as_str(), "InvalidBatchEntryId"),
                ("empty", "InvalidMessageContents"),
                ("nul", "InvalidMessageContents"),
                ("big", "MessageTooLarge"),
                ("late", "InvalidParameterValue"),
                ("attr", "InvalidParameterValue"),
            ]
        );
        assert!(plan.refused.iter().all(|f| f.sender_fault));
        let sent: Vec<_> = plan
            .chunks
            .iter()
            .flatten()
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(sent, ["ok", "ok_delay"]);
    }

    #[test]
    fn empty_batch_has_no_chunks() {
        let plan = plan(&[]);
        assert!(plan.chunks.is_empty() && plan.refused.is_empty());
    }
}
