//! Holder names: which typed names are one person, and how a name is shown on a terminal.
//!
//! The two-person check compares *skeletons*, not bytes: a name is NFKC-normalised, its
//! default-ignorable code points (zero-width spaces and joiners, bidi controls, variation
//! selectors, soft hyphens…) are removed, it is case-folded, and then mapped to its UTS #39
//! confusables skeleton (`unicode_security::skeleton`). "Alice", "al\u{200b}ice", "аlice"
//! (Cyrillic а) and "Alicé" typed two ways are each one person. Names are stored and logged as
//! typed; wherever one reaches a terminal it goes through [`printable`].

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

use super::{Error, Role};

/// Unicode's `Default_Ignorable_Code_Point` ranges (DerivedCoreProperties.txt, Unicode 15.1):
/// characters that render as nothing, or change how their neighbours render.
const DEFAULT_IGNORABLE: &[(char, char)] = &[
    ('\u{ad}', '\u{ad}'),
    ('\u{34f}', '\u{34f}'),
    ('\u{61c}', '\u{61c}'),
    ('\u{115f}', '\u{1160}'),
    ('\u{17b4}', '\u{17b5}'),
    ('\u{180b}', '\u{180f}'),
    ('\u{200b}', '\u{200f}'),
    ('\u{202a}', '\u{202e}'),
    ('\u{2060}', '\u{206f}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{fe00}', '\u{fe0f}'),
    ('\u{feff}', '\u{feff}'),
    ('\u{ffa0}', '\u{ffa0}'),
    ('\u{fff0}', '\u{fff8}'),
    ('\u{1bca0}', '\u{1bca3}'),
    ('\u{1d173}', '\u{1d17a}'),
    ('\u{e0000}', '\u{e0fff}'),
];

/// True for a default-ignorable code point (see [`DEFAULT_IGNORABLE`]).
pub fn is_default_ignorable(c: char) -> bool {
    DEFAULT_IGNORABLE
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The form two names are compared in: NFKC, default-ignorables removed, case-folded (full
/// case mapping: upper then lower, so "ß" and "SS" fold alike), NFKC again, then the UTS #39
/// confusables skeleton. Two names are the same person when their keys are equal.
pub fn key(name: &str) -> String {
    let visible: String = name.nfkc().filter(|c| !is_default_ignorable(*c)).collect();
    let folded: String = visible.to_uppercase().to_lowercase().nfkc().collect();
    unicode_security::skeleton(&folded).collect()
}

/// Whether two typed names are the same person (equal [`key`]s).
pub fn same_person(a: &str, b: &str) -> bool {
    key(a) == key(b)
}

/// A holder's name as typed, checked: surrounding white space trimmed; refused when it
/// contains a control character (an escape sequence, a tab) or nothing visible is left once
/// it is normalised. The name kept is the trimmed name as typed.
pub fn checked(role: Role, typed: &str) -> Result<String, Error> {
    let name = typed.trim();
    if name.is_empty() {
        return Err(Error::EmptyName { role: role.label() });
    }
    if name.chars().any(char::is_control) {
        return Err(Error::UnprintableName {
            role: role.label(),
            name: name.to_owned(),
        });
    }
    if key(name).trim().is_empty() {
        return Err(Error::InvisibleName {
            role: role.label(),
            name: name.to_owned(),
        });
    }
    Ok(name.to_owned())
}

/// Whether `c` is shown escaped: control characters (C0, DEL, C1: escape sequences start
/// here), default-ignorables (zero-width and bidi controls) and the line and paragraph
/// separators.
fn needs_escape(c: char) -> bool {
    c.is_control() || is_default_ignorable(c) || matches!(c, '\u{2028}' | '\u{2029}')
}

/// `text` as it may be printed on a terminal: every control character, invisible or
/// direction-changing character shown as a `\u{1b}`-style escape; anything else as it is.
/// Borrowed when nothing needed escaping.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`printable`] between double quotes, for messages.
pub fn quoted(text: &str) -> String {
    format!("\"{}\"", printable(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_invisible_characters_lookalikes_and_composition_do_not_make_two_people() {
        assert!(same_person("alice", "Alice"));
        assert!(same_person("alice", "al\u{200b}ice"));
        assert!(same_person("alice", "al\u{2060}ice\u{feff}"));
        assert!(same_person("alice", "\u{430}lice"), "Cyrillic а");
        assert!(
            same_person("Renée", "Rene\u{301}e"),
            "precomposed é vs e + U+0301"
        );
        assert!(same_person("ﬁona", "Fiona"), "NFKC ligature");
        assert!(same_person("STRASSE", "straße"), "full case folding");
        assert!(same_person("alice", "ALICE"));
    }

    #[test]
    fn different_names_stay_different() {
        assert!(!same_person("Ann", "Anne"));
        assert!(!same_person("Alice", "Bob"));
        assert!(!same_person("René", "Rene"));
        assert!(!same_person("Jan", "Jana"));
    }

    #[test]
    fn names_with_control_characters_or_nothing_visible_are_refused() {
        let r = Role::TokenHolder;
        assert_eq!(checked(r, "  Alice \n").unwrap(), "Alice");
        assert_eq!(
            checked(r, "al\u{200b}ice").unwrap(),
            "al\u{200b}ice",
            "kept as typed"
        );
        assert!(matches!(checked(r, "   "), Err(Error::EmptyName { .. })));
        assert!(matches!(
            checked(r, "\u{200b}\u{200d}"),
            Err(Error::InvisibleName { .. })
        ));
        let e = checked(r, "Eve\u{1b}[31m").unwrap_err();
        assert!(matches!(e, Error::UnprintableName { .. }), "{e}");
        let text = e.to_string();
        assert!(
            !text.contains('\u{1b}') && text.contains("\\u{1b}"),
            "{text}"
        );
        assert!(matches!(
            checked(r, "a\tb"),
            Err(Error::UnprintableName { .. })
        ));
    }

    #[test]
    fn printable_escapes_controls_and_invisible_characters_only() {
        assert!(matches!(printable("Renée Ольга"), Cow::Borrowed(_)));
        assert_eq!(printable("Eve\u{1b}[31m"), "Eve\\u{1b}[31m");
        assert_eq!(printable("al\u{200b}ice"), "al\\u{200b}ice");
        assert_eq!(printable("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
        assert_eq!(quoted("a\u{7f}"), "\"a\\u{7f}\"");
    }
}
