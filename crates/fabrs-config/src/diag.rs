//! Diagnostics: one per problem, each pointing at file:line:col and a key path.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in the source file, 1-based, counted in characters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
    /// Width of the offending token in characters (0 when unknown).
    pub len: u32,
}

/// One problem found in an environment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub loc: Loc,
    /// Dotted key path, e.g. `roles.web.autoscaling.min` (empty for syntax errors).
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
    /// The security rule this diagnostic enforces, when it comes from the lint.
    pub rule: Option<&'static str>,
}

impl Diagnostic {
    /// `file:line:col: error[rule]: path: message (hint)`, on one line.
    pub fn short(&self) -> String {
        let mut s = format!("{}:{}:{}: error", self.file.display(), self.loc.line, self.loc.col);
        if let Some(rule) = self.rule {
            s.push_str(&format!("[{rule}]"));
        }
        s.push_str(": ");
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        if let Some(h) = &self.hint {
            s.push_str(&format!(" ({h})"));
        }
        s
    }

    /// The one-line form followed by the source line, a caret under the
    /// problem and the hint: what a person reads in a terminal.
    pub fn render(&self, source: &str) -> String {
        let mut out = self.short_without_hint();
        out.push('\n');
        let gutter = self.loc.line.to_string().len();
        if let Some(line) = source.lines().nth(self.loc.line.saturating_sub(1) as usize) {
            // A long line (a 5 MB value) is shown as a window around the column.
            let col = self.loc.col.saturating_sub(1) as usize;
            let skip = col.saturating_sub(SNIPPET_BEFORE);
            // Control characters from the file are shown as symbols, never sent
            // to the terminal (an ESC in a value must not drive it).
            let mut text: String = line.chars().skip(skip).take(SNIPPET_WIDTH).map(visible_char).collect();
            let cut_end = line.chars().count() > skip + SNIPPET_WIDTH;
            let mut pad: String = text
                .chars()
                .take(col - skip)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            if skip > 0 {
                text.insert(0, '…');
                pad.insert(0, ' ');
            }
            if cut_end {
                text.push('…');
            }
            let width = (self.loc.len.max(1) as usize).min(SNIPPET_WIDTH);
            out.push_str(&format!("{:gutter$} |\n", ""));
            out.push_str(&format!("{} | {}\n", self.loc.line, text));
            out.push_str(&format!("{:gutter$} | {}{}\n", "", pad, "^".repeat(width)));
        }
        if let Some(h) = &self.hint {
            out.push_str(&format!("{:gutter$} = help: {h}\n", ""));
        }
        out
    }

    fn short_without_hint(&self) -> String {
        Diagnostic {
            hint: None,
            ..self.clone()
        }
        .short()
    }
}

/// One printable character for each character of a source line: C0 controls
/// as their Unicode control pictures (U+2400…), DEL and C1 controls as U+FFFD;
/// a tab stays a tab so the caret lines up.
fn visible_char(c: char) -> char {
    match c {
        '\t' => '\t',
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{FFFD}'),
        '\u{7f}' => '\u{2421}',
        c if c.is_control() => '\u{FFFD}',
        c => c,
    }
}

const SNIPPET_BEFORE: usize = 40;
const SNIPPET_WIDTH: usize = 120;

/// A value from the file, quoted for a message: long ones are cut, control
/// characters escaped, so a 5 MB value never becomes 5 MB of output.
pub fn shorten(value: &str) -> String {
    shorten_to(value, 60)
}

/// `shorten` with another limit (at least 60 characters).
pub fn shorten_to(value: &str, max: usize) -> String {
    let max = max.max(60);
    let count = value.chars().count();
    let visible = |s: &str| {
        s.chars()
            .map(|c| match c {
                '\n' => "\\n".to_string(),
                '\r' => "\\r".to_string(),
                '\t' => "\\t".to_string(),
                c if c.is_control() => format!("\\u{{{:04x}}}", c as u32),
                c => c.to_string(),
            })
            .collect::<String>()
    };
    if count <= max {
        visible(value)
    } else {
        let head: String = value.chars().take(40).collect();
        let tail: String = value.chars().skip(count - 12).collect();
        format!("{}…{} ({count} characters)", visible(&head), visible(&tail))
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// Every problem of one file, in source order.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{} error(s) in {}", .diagnostics.len(), .file.display())]
pub struct Diagnostics {
    pub file: PathBuf,
    pub text: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&d.render(&self.text));
            out.push('\n');
        }
        out
    }
}

/// Collects diagnostics while a file is decoded.
pub(crate) struct Sink {
    pub file: PathBuf,
    pub diags: Vec<Diagnostic>,
}

impl Sink {
    pub fn new(file: &Path) -> Self {
        Sink {
            file: file.to_path_buf(),
            diags: Vec::new(),
        }
    }

    pub fn error(&mut self, loc: Loc, path: &str, message: impl Into<String>) -> &mut Diagnostic {
        self.diags.push(Diagnostic {
            file: self.file.clone(),
            loc,
            path: path.to_string(),
            message: message.into(),
            hint: None,
            rule: None,
        });
        self.diags.last_mut().expect("just pushed")
    }
}

/// The closest candidate to `given`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(
            did_you_mean("instance_typ", ["instance_type", "count"]),
            Some("instance_type")
        );
        assert_eq!(did_you_mean("zzz", ["instance_type", "count"]), None);
    }

    #[test]
    fn renders_caret_under_token() {
        let d = Diagnostic {
            file: "e.yaml".into(),
            loc: Loc {
                line: 2,
                col: 3,
                len: 4,
            },
            path: "a.b".into(),
            message: "bad".into(),
            hint: Some("try c".into()),
            rule: None,
        };
        let r = d.render("a:\n  bbbb: 1\n");
        assert!(r.starts_with("e.yaml:2:3: error: a.b: bad\n"), "{r}");
        assert!(r.contains("= help: try c"), "{r}");
        assert!(r.contains("2 |   bbbb: 1\n  |   ^^^^\n"), "{r}");
        assert_eq!(d.short(), "e.yaml:2:3: error: a.b: bad (try c)");
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let d = Diagnostic {
            file: "e.yaml".into(),
            loc: Loc {
                line: 1,
                col: 4,
                len: 1,
            },
            path: String::new(),
            message: "bad".into(),
            hint: None,
            rule: None,
        };
        let r = d.render("k: \u{1b}[31mred\u{0}\u{9b}\n");
        assert!(!r.chars().any(|c| c.is_control() && c != '\n'), "{r:?}");
        assert!(r.contains("k: \u{241b}[31mred\u{2400}\u{FFFD}"), "{r}");
    }

    #[test]
    fn long_values_and_lines_are_cut() {
        let big = "x".repeat(5_000_000);
        let s = shorten(&big);
        assert!(s.len() < 100 && s.contains("(5000000 characters)"), "{s}");
        assert_eq!(shorten("a\nb"), "a\\nb");
        let d = Diagnostic {
            file: "e.yaml".into(),
            loc: Loc {
                line: 1,
                col: 999_999,
                len: 3,
            },
            path: "k".into(),
            message: "bad".into(),
            hint: None,
            rule: None,
        };
        let line = format!("k: {}BAD{}\n", "y".repeat(999_995), "z".repeat(4_000_000));
        let r = d.render(&line);
        assert!(r.len() < 600, "{} bytes", r.len());
        let lines: Vec<&str> = r.lines().collect();
        let caret = lines[3].find('^').unwrap();
        assert_eq!(
            lines[2].chars().nth(lines[3][..caret].chars().count()),
            Some('B'),
            "{r}"
        );
    }
}
