//! Unicode's full case folding, as Python's `str.casefold` does it: what the index's folded
//! columns hold and what `ilike` compares. Python folds the other side (the pattern, a scan's
//! values) with this same function (`_core.casefold`), so the two never differ, whichever
//! Unicode version the running Python has. The table is made from Python's own fold
//! (scripts/casefold-table.py); folding is per character, with no context.

mod table {
    include!("casefold_table.rs");
}

pub use table::UNICODE_VERSION;

/// The full case folding of one non-ASCII character, when it folds to something else.
fn fold_of(c: char) -> Option<&'static str> {
    let code = c as u32;
    table::FOLDS
        .binary_search_by_key(&code, |&(from, _)| from)
        .ok()
        .map(|at| table::FOLDS[at].1)
}

/// `text.casefold()`.
pub fn casefold(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if let Some(folded) = fold_of(c) {
            out.push_str(folded);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_as_python_does() {
        assert_eq!(casefold("Adam"), "adam");
        assert_eq!(casefold("Straße"), "strasse"); // full folding, not lowercase
        assert_eq!(casefold("ΣΑΣ ς"), "σασ σ");
        assert_eq!(casefold("ﬁ"), "fi");
        assert_eq!(casefold("İ"), "i\u{307}");
        assert_eq!(casefold("日本"), "日本");
        assert_eq!(casefold(""), "");
    }

    #[test]
    fn table_is_sorted_and_never_ascii() {
        let codes: Vec<u32> = table::FOLDS.iter().map(|&(c, _)| c).collect();
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
        assert!(codes.iter().all(|&c| c >= 0x80));
    }
}
