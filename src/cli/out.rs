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
