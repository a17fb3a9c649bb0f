//! The `like` operator's glob patterns: `*` matches any run of characters (including none), `\*` is
//! a literal star, and every other character (a lone `\` included) stands for itself. The spec names
//! no other escape, so `\\` is two backslashes, not one.
//!
//! A pattern is split once, at parse time, into the literal pieces between its wildcards. Matching
//! then anchors the first piece at the start and the last at the end, and finds each middle piece
//! at its leftmost position; leftmost is always safe because `*` can absorb whatever is skipped. Each
//! search is linear, so matching costs O(pattern + text) with no backtracking: both sides come from
//! untrusted input.

/// A parsed glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    /// The pattern as written, kept for printing the policy back.
    source: String,
    /// The literal pieces between wildcards: `n` wildcards give `n + 1` pieces.
    pieces: Vec<String>,
}

impl Glob {
    /// Parses a pattern; every string is a valid pattern.
    pub(crate) fn new(source: &str) -> Self {
        let mut pieces = Vec::new();
        let mut piece = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' if chars.peek() == Some(&'*') => {
                    chars.next();
                    piece.push('*');
                }
                '*' => pieces.push(std::mem::take(&mut piece)),
                c => piece.push(c),
            }
        }
        pieces.push(piece);
        Self {
            source: source.to_owned(),
            pieces,
        }
    }

    /// The pattern as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `text` matches the whole pattern.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(text) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        // Anchor the suffix before searching the middle, so the two cannot overlap.
        let Some(mut text) = text.strip_suffix(last.as_str()) else {
            return false;
        };
        for piece in middle {
            match text.find(piece.as_str()) {
                Some(at) => text = &text[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    const SPEC_PATTERN: &str = r"Alice\*, Bob*, Carol.";

    #[test]
    fn spec_examples_that_must_match() {
        let g = Glob::new(SPEC_PATTERN);
        for s in [
            "Alice*, Bob, Carol.",
            "Alice*, Bob, Dan, Erin, Carol.",
            "Alice*, Bob  , Carol.",
            "Alice*, Bob*, Carol.",
        ] {
            assert!(g.matches(s), "{s:?} should match");
        }
    }

    #[test]
    fn spec_examples_that_must_not_match() {
        let g = Glob::new(SPEC_PATTERN);
        for s in [
            "Alice*, Bob, Carol",
            "Alice*, Bob*, Carol!",
            "Alice, Bob, Carol.",
            "Alice Cooper, Bob, Carol.",
            " Alice*, Bob, Carol. ",
        ] {
            assert!(!g.matches(s), "{s:?} should not match");
        }
    }

    #[test]
    fn pieces_split_at_unescaped_stars_only() {
        assert_eq!(Glob::new(SPEC_PATTERN).pieces, ["Alice*, Bob", ", Carol."]);
        assert_eq!(Glob::new("*").pieces, ["", ""]);
        assert_eq!(Glob::new("").pieces, [""]);
        assert_eq!(Glob::new(r"a\b").pieces, [r"a\b"]);
        assert_eq!(Glob::new(r"a\\*").pieces, [r"a\*"]);
        assert_eq!(Glob::new(r"\").pieces, [r"\"]);
    }

    #[test]
    fn wildcards_and_literals() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("*@example.com", "bob@example.com", true),
            ("*@example.com", "carol@not.example.com", false),
            ("*@example.com", "carol@example.com.evil", false),
            ("a**b", "ab", true),
            ("*b*b*", "abab", true),
            ("*b*b*", "ab", false),
            (r"\*", "*", true),
            (r"\*", "x", false),
            ("h*llo", "héllo", true),
            ("*é", "café", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern:?} on {text:?}"
            );
        }
    }

    /// A plain backtracking matcher over the same pieces, as an independent reference.
    fn reference(pattern: &str, text: &str) -> bool {
        fn go(p: &[Tok], t: &[char]) -> bool {
            match p.split_first() {
                None => t.is_empty(),
                Some((Tok::Star, rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
                Some((Tok::Char(c), rest)) => t.first() == Some(c) && go(rest, &t[1..]),
            }
        }
        #[derive(Debug)]
        enum Tok {
            Star,
            Char(char),
        }
        let mut toks = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' && chars.peek() == Some(&'*') {
                chars.next();
                toks.push(Tok::Char('*'));
            } else if c == '*' {
                toks.push(Tok::Star);
            } else {
                toks.push(Tok::Char(c));
            }
        }
        go(&toks, &text.chars().collect::<Vec<_>>())
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_a_backtracking_matcher(
            pattern in r"[ab*\\]{0,8}",
            text in r"[ab*\\]{0,10}",
        ) {
            proptest::prop_assert_eq!(Glob::new(&pattern).matches(&text), reference(&pattern, &text));
        }
    }
}
