//! The one output channel: data to stdout, everything else to stderr.
//! Nothing else in fabrs writes to the terminal.

use std::io::Write;

use anstream::{AutoStream, ColorChoice as StreamChoice};
use anstyle::{AnsiColor, Style};

use crate::args::{ColorChoice, OutputFormat};

// `info`, `detail` and `warn` serve the long-running commands (plan, create-env, deploy).
#[allow(dead_code)]
pub struct Printer {
    pub format: OutputFormat,
    quiet: bool,
    verbose: bool,
    out: AutoStream<std::io::Stdout>,
    err: AutoStream<std::io::Stderr>,
}

const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default();
#[allow(dead_code)]
const YELLOW: Style = AnsiColor::Yellow.on_default();
const BOLD: Style = Style::new().bold();

#[allow(dead_code)]
impl Printer {
    pub fn new(format: OutputFormat, quiet: bool, verbose: bool, color: ColorChoice) -> Self {
        let choice = match color {
            ColorChoice::Always => StreamChoice::Always,
            ColorChoice::Never => StreamChoice::Never,
            ColorChoice::Auto => StreamChoice::Auto,
        };
        Printer {
            format,
            quiet,
            verbose,
            out: AutoStream::new(std::io::stdout(), choice),
            err: AutoStream::new(std::io::stderr(), choice),
        }
    }

    /// Requested data (plans, JSON, file lists): always printed, to stdout.
    pub fn data(&mut self, text: &str) {
        // A closed pipe (`fabrs … | head`) is not an error worth a panic.
        let _ = self.out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = self.out.write_all(b"\n");
        }
        let _ = self.out.flush();
    }

    pub fn json(&mut self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).expect("JSON values serialize");
        self.data(&text);
    }

    /// Progress and results for people, to stderr; silenced by -q.
    pub fn info(&mut self, text: &str) {
        if !self.quiet {
            let _ = writeln!(self.err, "{text}");
        }
    }

    pub fn success(&mut self, text: &str) {
        if !self.quiet {
            let _ = writeln!(self.err, "{GREEN}{text}{GREEN:#}");
        }
    }

    pub fn detail(&mut self, text: &str) {
        if self.verbose {
            let _ = writeln!(self.err, "{text}");
        }
    }

    pub fn warn(&mut self, text: &str) {
        let _ = writeln!(self.err, "{YELLOW}warning{YELLOW:#}: {text}");
    }

    pub fn error(&mut self, text: &str) {
        let _ = writeln!(self.err, "{RED}error{RED:#}: {text}");
    }

    /// A rendered diagnostic block (already formatted), to stderr.
    pub fn diagnostic(&mut self, block: &str) {
        let mut lines = block.lines();
        if let Some(first) = lines.next() {
            let _ = writeln!(self.err, "{BOLD}{first}{BOLD:#}");
        }
        for l in lines {
            let _ = writeln!(self.err, "{l}");
        }
    }
}
