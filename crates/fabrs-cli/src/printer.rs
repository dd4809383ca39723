//! The one output channel: data to stdout, everything else to stderr.
//! Nothing else in fabrs writes to the terminal.

// The one module allowed to print (see [workspace.lints] in Cargo.toml).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;

use anstream::{AutoStream, ColorChoice as StreamChoice};
use anstyle::{AnsiColor, Style};

use std::io::{BufRead, IsTerminal};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::bail;
use fabrs_exec::apply::Event;
use fabrs_plan::plan::Action;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::args::{ColorChoice, OutputFormat};

pub struct Printer {
    pub format: OutputFormat,
    quiet: bool,
    verbose: bool,
    out: AutoStream<std::io::Stdout>,
    err: AutoStream<std::io::Stderr>,
}

const RED: Style = AnsiColor::Red.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const BOLD: Style = Style::new().bold();

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

    pub fn is_quiet(&self) -> bool {
        self.quiet
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

    /// A sink for JSON lines (one compact object per line on stdout) that
    /// callbacks running during an operation can share.
    pub fn json_lines(&self) -> JsonLines {
        JsonLines {
            out: Mutex::new(std::io::stdout()),
        }
    }

    pub fn json(&mut self, value: &impl serde::Serialize) {
        let text = serde_json::to_string_pretty(value).expect("reports serialize");
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

/// One JSON object per line on stdout, flushed per line (`--output json`
/// event streams).
pub struct JsonLines {
    out: Mutex<std::io::Stdout>,
}

impl JsonLines {
    pub fn emit(&self, value: &serde_json::Value) {
        let mut line = serde_json::to_string(value).expect("JSON values serialize");
        line.push('\n');
        let mut out = self.out.lock().unwrap();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

pub fn confirm(question: &str, yes: bool, printer: &mut Printer) -> anyhow::Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        bail!("refusing to change the account without confirmation: run in a terminal, or pass --yes");
    }
    printer.info(&format!("{question}\n  Only 'yes' will be accepted to approve.\n"));
    eprint!("  Enter a value: ");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

/// Progress for a run of changes: a spinner while something waits (hidden
/// when stderr is not a terminal or with -q), one line per finished change.
pub struct Progress {
    pub bar: ProgressBar,
    started: Mutex<std::collections::BTreeMap<String, Instant>>,
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = ProgressBar::new_spinner();
        if quiet || !std::io::stderr().is_terminal() {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        } else {
            bar.set_style(ProgressStyle::with_template("{spinner} {elapsed:>4} {wide_msg}").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Progress {
            bar,
            started: Mutex::new(Default::default()),
            quiet,
        }
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }

    /// A deploy's progress: steps as lines, waits on the spinner, remote
    /// output prefixed by host.
    pub fn note(&self, n: fabrs_exec::deploy::Note) {
        use fabrs_exec::deploy::Note;
        match n {
            Note::Step(s) => self.line(format!("==> {s}")),
            Note::Info(s) => {
                self.bar.set_message(s.clone());
                self.line(format!("    {s}"));
            }
            Note::Remote { host, line } => self.line(format!("    {host} | {line}")),
        }
    }

    pub fn event(&self, e: Event) {
        match e {
            Event::Started { address, action } => {
                self.started.lock().unwrap().insert(address.to_string(), Instant::now());
                self.bar.set_message(format!("{} {address}", verb(action, false)));
            }
            Event::Waiting { address, status } => self.bar.set_message(format!("{address}: {status}")),
            Event::Finished { address, action, id } => {
                let took = self
                    .started
                    .lock()
                    .unwrap()
                    .remove(&address.to_string())
                    .map(|t| t.elapsed())
                    .unwrap_or_default();
                let id = if id.is_empty() {
                    String::new()
                } else {
                    format!(" [{id}]")
                };
                self.line(format!(
                    "{address}: {}{id} ({:.1}s)",
                    verb(action, true),
                    took.as_secs_f64()
                ));
            }
            Event::Deferred { address, why } => self.line(format!("{address}: next pass ({why})")),
        }
    }
}

fn verb(action: Action, done: bool) -> &'static str {
    match (action, done) {
        (Action::Create, false) => "creating",
        (Action::Create, true) => "created",
        (Action::Update, false) => "updating",
        (Action::Update, true) => "updated",
        (Action::CreateBeside, false) => "creating",
        (Action::CreateBeside, true) => "created",
        (Action::Replace, false) => "replacing",
        (Action::Replace, true) => "replaced",
        (Action::Delete, false) => "destroying",
        (Action::Delete, true) => "destroyed",
    }
}
