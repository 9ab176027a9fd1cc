//! How a refusal keyword and the start of a reply are cut into tokens (Interleaving++'s
//! refusal filter; the matching itself is `selector::RefusalFilter`). Here so a policy whose
//! keyword could never match is refused when it is read, by the same rule that matches.

fn normalise_char(c: char) -> char {
    match c {
        '\u{2019}' | '\u{2018}' | '\u{02BC}' => '\'',
        other => other,
    }
}

/// A text fragment's tokens: lower-cased, curly apostrophes made straight, cut at every
/// character that is neither alphanumeric nor an apostrophe, apostrophes at the ends of a
/// token dropped, empty tokens dropped (`"*Sorry*,"` → `["sorry"]`, `"'cannot'"` →
/// `["cannot"]`, `"--"` → `[]`).
pub fn refusal_tokens(piece: &str) -> Vec<String> {
    let lowered: String = piece
        .chars()
        .map(normalise_char)
        .flat_map(char::to_lowercase)
        .collect();
    lowered
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|t| t.trim_matches('\'').to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::refusal_tokens;

    #[test]
    fn tokens_follow_the_documented_rule() {
        assert_eq!(refusal_tokens("*Sorry*,"), vec!["sorry"]);
        assert_eq!(refusal_tokens("sorry—I"), vec!["sorry", "i"]);
        assert_eq!(refusal_tokens("Can\u{2019}t"), vec!["can't"]);
        assert_eq!(refusal_tokens("'cannot'"), vec!["cannot"]);
        assert!(refusal_tokens("—!!").is_empty());
    }
}
