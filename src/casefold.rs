//! Case-insensitive search that returns offsets into the ORIGINAL text.
//!
//! `s.to_lowercase()` may change byte lengths (`ẞ` 3 bytes → `ß` 2, `İ` 2 → `i̇` 3, the Kelvin sign U+212A
//! 3 → `k` 1), so an offset found in a lower-cased copy must never slice the original: that
//! panicked on `/addchore ẞé by tomorrow 18:00` and `/assign ẞé nobody` (issue 8, item 24).
//! [`Folded`] lower-cases char by char and keeps, for every byte of the folded text, where its
//! character starts in the original; a match is reported only when both of its ends fall on a
//! character boundary of the original. Uses: std only.

use std::ops::Range;

/// A lower-cased copy of `orig` with an offset map back into it.
#[derive(Debug, Clone)]
pub struct Folded<'a> {
    orig: &'a str,
    folded: String,
    /// For each byte of `folded` (and one past its end): the byte offset in `orig` of the
    /// character whose lower-case form starts there, `None` inside an expansion.
    map: Vec<Option<usize>>,
}

/// `s` lower-cased char by char (`char::to_lowercase`, no context rules such as final sigma),
/// the same folding [`Folded`] applies to the text it searches.
pub fn fold(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

impl<'a> Folded<'a> {
    /// Fold `orig`.
    pub fn new(orig: &'a str) -> Self {
        let mut folded = String::with_capacity(orig.len());
        let mut map = Vec::with_capacity(orig.len() + 1);
        for (i, c) in orig.char_indices() {
            let before = folded.len();
            folded.extend(c.to_lowercase());
            map.push(Some(i));
            map.resize(folded.len().max(before + 1), None);
            // an (impossible) empty expansion would leave `map` one entry ahead: keep it aligned
            map.truncate(folded.len());
        }
        map.push(Some(orig.len()));
        Self { orig, folded, map }
    }

    /// The folded text.
    pub fn as_str(&self) -> &str {
        &self.folded
    }

    /// The original range for folded bytes `a..b`, when both ends sit on original boundaries.
    fn original(&self, a: usize, b: usize) -> Option<Range<usize>> {
        Some(self.map.get(a).copied().flatten()?..self.map.get(b).copied().flatten()?)
    }

    /// Byte range in the original of the first case-insensitive occurrence of `needle`.
    pub fn find(&self, needle: &str) -> Option<Range<usize>> {
        let n = fold(needle);
        self.folded
            .match_indices(n.as_str())
            .find_map(|(i, m)| self.original(i, i + m.len()))
    }

    /// Byte range in the original of the last case-insensitive occurrence of `needle`.
    pub fn rfind(&self, needle: &str) -> Option<Range<usize>> {
        let n = fold(needle);
        self.folded
            .rmatch_indices(n.as_str())
            .find_map(|(i, m)| self.original(i, i + m.len()))
    }

    /// The original text.
    pub fn original_str(&self) -> &'a str {
        self.orig
    }
}

/// `s` without `prefix`, compared case-insensitively; the rest is a slice of `s`.
pub fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let f = Folded::new(s);
    let n = fold(prefix);
    if !f.folded.starts_with(n.as_str()) {
        return None;
    }
    let end = f.original(0, n.len())?.end;
    s.get(end..)
}

/// `s` without `suffix`, compared case-insensitively; the rest is a slice of `s`.
pub fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let f = Folded::new(s);
    let n = fold(suffix);
    if !f.folded.ends_with(n.as_str()) {
        return None;
    }
    let start = f.original(f.folded.len() - n.len(), f.folded.len())?.start;
    s.get(..start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_point_into_the_original() {
        let s = "ẞé by tomorrow 18:00";
        let r = Folded::new(s).rfind(" BY ").unwrap();
        assert_eq!(&s[r.end..], "tomorrow 18:00");
        assert_eq!(&s[..r.start], "ẞé");
        assert_eq!(strip_suffix_ci("ẞé NOBODY", " nobody"), Some("ẞé"));
        assert_eq!(strip_prefix_ci("İDONE x", "i̇done "), Some("x"));
        assert_eq!(strip_prefix_ci("Done dishes", "done "), Some("dishes"));
        assert_eq!(strip_prefix_ci("ΣΣ x", "σσ "), Some("x"));
        assert_eq!(strip_prefix_ci("e\u{301}x", "é"), None);
        // "i" alone matches half of İ's expansion: not a boundary of the original
        assert_eq!(Folded::new("İ").find("i"), None);
        assert_eq!(Folded::new("a\u{212A}b").find("k"), Some(1..4)); // Kelvin sign
    }

    #[test]
    fn never_panics_on_case_changing_text() {
        let alphabet = [
            "ẞ", "İ", "Σ", "ς", "é", "e\u{301}", "\u{212A}", "ﬀ", " by ", " nobody", "a",
        ];
        for a in alphabet {
            for b in alphabet {
                for c in alphabet {
                    let s = format!("{a}{b}{c}");
                    for n in alphabet {
                        let f = Folded::new(&s);
                        for r in [f.find(n), f.rfind(n)].into_iter().flatten() {
                            assert!(s.get(r.clone()).is_some(), "{s:?} {n:?} {r:?}");
                        }
                        let _ = strip_prefix_ci(&s, n);
                        let _ = strip_suffix_ci(&s, n);
                    }
                }
            }
        }
    }
}
