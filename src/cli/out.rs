//! What the command line prints on stdout. A reader that left (`vitrun sweep … | head -1`)
//! never stops a command mid-way with a panic: the rest of the output is dropped and the
//! command finishes its work.

use std::io::Write;

/// Writes `text` to stdout; a closed or full pipe is not an error of the command.
pub fn text(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes one line to stdout (see [`text`]).
pub fn line(text: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_fmt(text).and_then(|_| out.write_all(b"\n"));
}

/// `text` with every character that could drive the terminal — control characters but the
/// newline and the tab, C1 controls, and the bidirectional-text overrides that reorder what is
/// shown — written as a visible `\u{…}` escape. Stored strings (an error, a swept value, a
/// device name) go through this before they reach a terminal.
pub fn printable(text: &str) -> String {
    let hidden = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !text.chars().any(hidden) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if hidden(c) {
                format!("\\u{{{:x}}}", c as u32)
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// How a read command prints: its table, one JSON document, or only the names a script
/// pipes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    #[default]
    Text,
    Json,
    Quiet,
}

/// `--json` and `--quiet`, the same on every read command (`ls`, `plan`, `status`, `check`,
/// `diff`).
#[derive(clap::Args, Debug, Clone, Copy, Default)]
pub struct FormArgs {
    /// One JSON document instead of the table, e.g. vitrun ls --json | jq '.[].id'
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Only what a script pipes on, one per line: trial ids (check: the trial id; diff: the
    /// keys that differ), e.g. vitrun ls -q --status failed | xargs vitrun rm
    #[arg(long, short)]
    quiet: bool,
}

impl FormArgs {
    /// The form asked for.
    pub fn form(self) -> Form {
        match (self.json, self.quiet) {
            (true, _) => Form::Json,
            (_, true) => Form::Quiet,
            _ => Form::Text,
        }
    }
}

/// `items`, one per line (what `--quiet` prints).
pub fn lines<I: IntoIterator<Item = S>, S: std::fmt::Display>(items: I) -> String {
    items.into_iter().map(|i| format!("{i}\n")).collect()
}

/// `value` as the one JSON document a `--json` command prints.
pub fn json(value: &serde_json::Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).expect("a JSON value serialises")
    )
}

/// `println!` for the command line's output, through [`line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(format_args!($($arg)*))
    };
}
pub(crate) use say;

#[cfg(test)]
mod tests {
    use super::printable;

    /// Escape sequences, carriage returns and text-direction overrides are shown, not obeyed;
    /// ordinary text, newlines and tabs pass unchanged.
    #[test]
    fn terminal_controls_are_shown_as_escapes() {
        assert_eq!(printable("plain\ttext\nä ✓"), "plain\ttext\nä ✓");
        assert_eq!(printable("\u{1b}[2Jgone"), "\\u{1b}[2Jgone");
        assert_eq!(printable("a\rb\u{7f}"), "a\\u{d}b\\u{7f}");
        assert_eq!(printable("x\u{202e}y\u{9b}"), "x\\u{202e}y\\u{9b}");
    }
}
