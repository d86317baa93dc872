//! [`ParseError`]: a TOML error told within bounds.

use std::fmt;

use tower_prism_core::config::{quote_bounded, MAX_QUOTED};

/// The most characters of toml's own message a [`ParseError`] keeps (it may quote a
/// value, e.g. a string given where a number belongs).
pub const MAX_PARSE_MESSAGE: usize = 256;

/// A TOML syntax or type error, or an unknown key, told within bounds: toml's message (at
/// most [`MAX_PARSE_MESSAGE`] characters), the line and column, and a window of at most
/// 64 characters of that line around the column. However large the input, the
/// error stays small (toml's own error keeps and prints the whole source line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    message: String,
    line: Option<usize>,
    column: Option<usize>,
    excerpt: Option<String>,
}

impl ParseError {
    /// Bounds toml's error `error` about `text`.
    pub(crate) fn new(text: &str, error: &toml::de::Error) -> Self {
        let message = quote_bounded(error.message().trim(), MAX_PARSE_MESSAGE);
        let Some(span) = error.span() else {
            return ParseError {
                message,
                line: None,
                column: None,
                excerpt: None,
            };
        };
        let at = floor_char_boundary(text, span.start.min(text.len()));
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let line = text[..line_start].matches('\n').count() + 1;
        let column = text[line_start..at].chars().count() + 1;
        ParseError {
            message,
            line: Some(line),
            column: Some(column),
            excerpt: Some(excerpt(&text[line_start..line_end], column - 1)),
        }
    }

    /// toml's message (bounded).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The line of the error (1-based), when toml knows where it is.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The column of the error in characters (1-based), when toml knows where it is.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// At most 64 characters of the line, around the column (`...` marks a cut).
    pub fn excerpt(&self) -> Option<&str> {
        self.excerpt.as_deref()
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        if let Some(excerpt) = &self.excerpt {
            write!(f, ": {excerpt}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ParseError {}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// At most 64 characters of `line`, starting a little before character
/// `column`, with `...` where it was cut.
fn excerpt(line: &str, column: usize) -> String {
    let from = column.saturating_sub(MAX_QUOTED / 4);
    let mut chars = line.char_indices().skip(from);
    let Some((start, _)) = chars.next() else {
        return line.trim_end().to_owned();
    };
    let end = chars.nth(MAX_QUOTED.saturating_sub(1)).map(|(i, _)| i);
    let mut out = String::new();
    if start > 0 {
        out.push_str("...");
    }
    out.push_str(line[start..end.unwrap_or(line.len())].trim_end());
    if end.is_some() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigFileError, ReliabilityConfig};

    #[test]
    fn parse_errors_give_line_column_and_a_bounded_excerpt() {
        let text = "[policy.p.rate_limit]\nrate = 10\nburst = \"é\" # not a number\n";
        let ConfigFileError::Parse(err) = ReliabilityConfig::from_toml(text).unwrap_err() else {
            panic!("a parse error");
        };
        assert_eq!((err.line(), err.column()), (Some(3), Some(9)));
        assert_eq!(err.excerpt(), Some("burst = \"é\" # not a number"));
        assert!(err.to_string().contains("(line 3, column 9)"), "{err}");
        // a long line is cut around the column, on character boundaries
        let line = format!("{}{}", "é".repeat(200), "x".repeat(200));
        let cut = excerpt(&line, 200);
        assert!(cut.starts_with("...é") && cut.ends_with("x..."), "{cut}");
        assert_eq!(cut.chars().count(), MAX_QUOTED + 6, "{cut}");
        assert_eq!(excerpt("short", 2), "short");
        assert_eq!(excerpt("", 0), "");
    }
}
