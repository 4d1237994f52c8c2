//! Feature-name patterns for rule selectors.

/// Whether `text` matches `pattern`, where `*` matches any run of characters (empty included),
/// `?` matches exactly one character, and every other character matches itself.
///
/// Runs in O(|pattern| · |text|) at worst: on a mismatch after a `*`, the star absorbs one more
/// character and matching resumes from just after it (no recursion, no exponential blow-up).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Position of the last `*` seen in the pattern and the text position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a selector string contains pattern characters.
pub(crate) fn is_pattern(s: &str) -> bool {
    s.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        let yes = [
            ("txn_*", "txn_amount"),
            ("txn_*", "txn_"),
            ("*", ""),
            ("*", "anything"),
            ("*_count", "user_login_count"),
            ("a?c", "abc"),
            ("a*b*c", "a__b__b__c"),
            ("**x", "x"),
            ("é*", "été"),
        ];
        let no = [
            ("txn_*", "tx_amount"),
            ("a?c", "ac"),
            ("a*b*c", "a__b__b__"),
            ("abc", "abcd"),
            ("", "a"),
            ("*_count", "count"),
        ];
        for (p, t) in yes {
            assert!(glob_match(p, t), "{p} should match {t}");
        }
        for (p, t) in no {
            assert!(!glob_match(p, t), "{p} should not match {t}");
        }
        // A pathological pattern still finishes quickly.
        let text = "a".repeat(2000);
        assert!(!glob_match("*a*a*a*a*a*a*a*b", &text));
    }
}
