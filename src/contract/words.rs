//! The words every message shares: a count and its noun agreeing ("1 trial", "3 trials").

/// `n` and `noun` (singular) agreeing with it: `1 trial`, `0 trials`, `2 processes`, `3 axes`,
/// `4 entries`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {}", plural(noun))
    }
}

/// The plural of an English noun as messages use them.
fn plural(noun: &str) -> String {
    if let Some(stem) = noun.strip_suffix("is") {
        return format!("{stem}es");
    }
    let ends_in_vowel_y = noun.len() >= 2
        && noun.ends_with('y')
        && noun[..noun.len() - 1].ends_with(['a', 'e', 'i', 'o', 'u']);
    if noun.ends_with('y') && !ends_in_vowel_y {
        return format!("{}ies", &noun[..noun.len() - 1]);
    }
    if noun.ends_with(['s', 'x']) || noun.ends_with("ch") || noun.ends_with("sh") {
        return format!("{noun}es");
    }
    format!("{noun}s")
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "trial"), "1 trial");
        assert_eq!(count(0, "trial"), "0 trials");
        assert_eq!(count(2, "process"), "2 processes");
        assert_eq!(count(3, "axis"), "3 axes");
        assert_eq!(count(4, "entry"), "4 entries");
        assert_eq!(count(5, "key"), "5 keys");
        assert_eq!(count(6, "batch"), "6 batches");
        assert_eq!(count(7, "box"), "7 boxes");
    }
}
