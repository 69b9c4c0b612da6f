//! "Did you mean …?" for misspelled artifact and profile names: the existing names closest
//! to what was typed by edit distance.

use std::fmt;

/// The names closest to a misspelled one; displays as `; did you mean "a" or "b"?`, or as
/// nothing when no name is close.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DidYouMean(pub Vec<String>);

impl DidYouMean {
    /// The `candidates` closest to `query`: at most three, all at the smallest distance, and
    /// only if that distance is small next to the name (a third of its length, at least 1).
    pub fn closest<'a>(query: &str, candidates: impl IntoIterator<Item = &'a str>) -> DidYouMean {
        let limit = (query.chars().count() / 3).max(1);
        let mut scored: Vec<(usize, &str)> = candidates
            .into_iter()
            .filter(|c| *c != query)
            .map(|c| (edit_distance(query, c), c))
            .filter(|(d, _)| *d <= limit)
            .collect();
        scored.sort();
        scored.dedup();
        let best = scored.first().map(|(d, _)| *d);
        DidYouMean(
            scored
                .into_iter()
                .take_while(|(d, _)| Some(*d) == best)
                .take(3)
                .map(|(_, c)| c.to_string())
                .collect(),
        )
    }

    /// Whether a close name was found.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for DidYouMean {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.0.iter().map(|n| format!("{n:?}")).collect();
        match quoted.as_slice() {
            [] => Ok(()),
            [one] => write!(f, "; did you mean {one}?"),
            [rest @ .., last] => write!(f, "; did you mean {} or {last}?", rest.join(", ")),
        }
    }
}

/// Edit distance between two strings, by characters: insertions, deletions, substitutions
/// and swaps of two neighbours ("sic" is one edit from "sci"), each counting one.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d: Vec<Vec<usize>> = (0..=a.len())
        .map(|i| (0..=b.len()).map(|j| if i == 0 { j } else { i }).collect())
        .collect();
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitute = d[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = substitute.min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("sci", "sci"), 0);
        assert_eq!(edit_distance("sic", "sci"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("pythn", "python"), 1);
        assert_eq!(edit_distance("gcc", "sci"), 2);
        assert_eq!(edit_distance("é", "e"), 1);
    }

    #[test]
    fn closest_names_are_suggested_and_far_ones_are_not() {
        let names = ["sci", "python", "numpy", "scipy"];
        assert_eq!(DidYouMean::closest("sic", names).0, ["sci"]);
        assert_eq!(DidYouMean::closest("pythn", names).0, ["python"]);
        assert!(DidYouMean::closest("gcc", names).is_empty());
        assert_eq!(
            DidYouMean::closest("sic", names).to_string(),
            "; did you mean \"sci\"?"
        );
        assert_eq!(
            DidYouMean::closest("ab", ["ax", "xb", "zz"]).to_string(),
            "; did you mean \"ax\" or \"xb\"?"
        );
        assert_eq!(DidYouMean::default().to_string(), "");
    }
}
