//! Tags, made acceptable to Channel.io: at most 20 per user, none containing `.`, `$`, `/`
//! or a space. Forbidden characters become `_` (so `vip.2024` stays recognisable as
//! `vip_2024`), duplicates collapse, and what exceeds the limit is reported, not silently lost.

/// Most tags a Channel.io user may carry; `tags` replaces them all.
pub const MAX_TAGS: usize = 20;

/// Characters Channel.io refuses inside a tag.
pub const FORBIDDEN_TAG_CHARS: [char; 4] = ['.', '$', '/', ' '];

/// Replaces characters Channel.io refuses (and any other whitespace) with `_`, trims, and
/// returns `None` for a tag that is empty afterwards.
pub fn normalise_tag(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if FORBIDDEN_TAG_CHARS.contains(&c) || c.is_whitespace() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = cleaned.trim_matches('_').to_string();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Normalises a tag list: each tag cleaned, empties dropped, duplicates (case-insensitive)
/// removed keeping the first spelling, order kept.
pub fn normalise_tags<I, S>(raw: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut seen = std::collections::HashSet::new();
    raw.into_iter()
        .filter_map(|t| normalise_tag(t.as_ref()))
        .filter(|t| seen.insert(t.to_lowercase()))
        .collect()
}

/// Whether Channel.io accepts `tag` as it is.
pub fn is_valid_channel_tag(tag: &str) -> bool {
    !tag.is_empty()
        && !tag
            .chars()
            .any(|c| FORBIDDEN_TAG_CHARS.contains(&c) || c.is_whitespace())
}

/// A tag list within Channel.io's limits, with what did not fit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelTags {
    /// At most [`MAX_TAGS`], each valid.
    pub kept: Vec<String>,
    /// Tags beyond the limit, in order; the caller logs how many.
    pub dropped: Vec<String>,
}

impl ChannelTags {
    /// Normalises `raw` and keeps the first [`MAX_TAGS`].
    pub fn from_raw<I, S>(raw: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut kept = normalise_tags(raw);
        let dropped = if kept.len() > MAX_TAGS {
            kept.split_off(MAX_TAGS)
        } else {
            Vec::new()
        };
        ChannelTags { kept, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_characters_become_underscores() {
        assert_eq!(normalise_tag(" vip.2024 "), Some("vip_2024".into()));
        assert_eq!(normalise_tag("a$b/c d"), Some("a_b_c_d".into()));
        assert_eq!(normalise_tag(" . "), None);
    }

    #[test]
    fn duplicates_collapse_case_insensitively() {
        assert_eq!(
            normalise_tags(["VIP", "vip", "new lead", "new.lead"]),
            vec!["VIP", "new_lead"]
        );
    }

    #[test]
    fn keeps_twenty_and_reports_the_rest() {
        let raw: Vec<String> = (0..25).map(|i| format!("t{i}")).collect();
        let tags = ChannelTags::from_raw(&raw);
        assert_eq!(tags.kept.len(), 20);
        assert_eq!(tags.dropped, vec!["t20", "t21", "t22", "t23", "t24"]);
        assert!(tags.kept.iter().all(|t| is_valid_channel_tag(t)));
    }
}
