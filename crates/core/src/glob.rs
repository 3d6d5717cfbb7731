//! A tiny glob matcher for one path component: `*` (any run of characters), `?`
//! (one character), `[abc]`, `[a-z]` and `[!a-z]` / `[^a-z]` (one character in, or
//! not in, the class). There is no escaping; `/` never appears in what is matched.

/// Whether `text` contains a glob character (`*`, `?`, `[`).
pub fn has_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Why a pattern is not a glob: `[` without its `]`.
pub fn check(pattern: &str) -> Result<(), String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '[' {
            match class_end(&chars, i) {
                Some(end) => i = end + 1,
                None => return Err(format!("unclosed [ in {pattern:?}")),
            }
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// Whether `name` matches `pattern` as a whole. A malformed class (`[` without
/// `]`) matches nothing; [`check`] reports it.
pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point for the last `*`: linear in
    // practice and never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class_end(&p, pi) {
                Some(end) if class_matches(&p[pi + 1..end], n[ni]) => Some(end + 1),
                Some(_) => None,
                None => return false,
            },
            Some(&c) if c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                // Let the last `*` swallow one more character and retry.
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The index of the `]` closing the class opened at `open`. A `]` right after
/// `[` (or after `[!`, `[^`) belongs to the class.
fn class_end(p: &[char], open: usize) -> Option<usize> {
    let mut i = open + 1;
    if matches!(p.get(i), Some('!' | '^')) {
        i += 1;
    }
    if p.get(i) == Some(&']') {
        i += 1;
    }
    (i..p.len()).find(|&j| p[j] == ']')
}

/// Whether `c` is in the class whose inside (without the brackets) is `class`.
fn class_matches(class: &[char], c: char) -> bool {
    let (negated, items) = match class.first() {
        Some('!' | '^') => (true, &class[1..]),
        _ => (false, class),
    };
    let mut found = false;
    let mut i = 0;
    while i < items.len() {
        if i + 2 < items.len() && items[i + 1] == '-' {
            found |= items[i] <= c && c <= items[i + 2];
            i += 3;
        } else {
            found |= items[i] == c;
            i += 1;
        }
    }
    found != negated
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_a_shell() {
        for (pattern, name, expected) in [
            ("*.json", "a.json", true),
            ("*.json", ".json", true),
            ("*.json", "a.yaml", false),
            ("*.json", "a.json.bak", false),
            ("a?.yml", "ab.yml", true),
            ("a?.yml", "a.yml", false),
            ("[ab].json", "b.json", true),
            ("[ab].json", "c.json", false),
            ("[a-c]*", "c1", true),
            ("[!a-c]*", "c1", false),
            ("[^a-c]*", "d1", true),
            ("[]x]", "]", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b", "xxaxxbxxa", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("exact.json", "exact.json", true),
            ("[a-", "a", false),
        ] {
            assert_eq!(matches(pattern, name), expected, "{pattern} vs {name}");
        }
    }

    #[test]
    fn check_names_an_unclosed_class() {
        assert!(check("[ab].json").is_ok());
        assert!(check("*.json").is_ok());
        assert_eq!(check("[ab.json").unwrap_err(), "unclosed [ in \"[ab.json\"");
    }

    #[test]
    fn long_stars_do_not_blow_up() {
        let name = "a".repeat(200);
        assert!(!matches("*a*a*a*a*a*a*a*b", &name));
    }
}
