//! "Did you mean": the valid key nearest to a mistyped one.

use std::collections::BTreeSet;

/// The valid key closest to `key` by edit distance, for "did you mean".
/// Keys in the same section are preferred, and a key whose initials spell a valid key
/// (`learning_rate` → `lr`) matches it outright.
pub fn nearest(key: &str, schema: &BTreeSet<String>) -> String {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let initials: String = leaf.split('_').filter_map(|w| w.chars().next()).collect();
    schema
        .iter()
        .map(|s| {
            let (s_section, s_leaf) = s.rsplit_once('.').unwrap_or(("", s));
            let score = if s_section == section {
                if s_leaf == initials {
                    0
                } else {
                    strsim::levenshtein(leaf, s_leaf)
                }
            } else {
                100 + strsim::levenshtein(key, s)
            };
            (score, s)
        })
        .min()
        .map(|(_, s)| s.clone())
        .unwrap_or_default()
}
