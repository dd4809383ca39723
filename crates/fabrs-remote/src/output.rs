//! Turning results into lines a person reads.

use crate::{HostResult, Outcome};

/// Every host's output, one host after the other in the order of `results`:
///
/// ```text
/// i-0aa | a line of stdout
/// i-0aa ! a line of stderr
/// i-0aa = exit 0
/// i-0bb = exit 3
/// i-0cc = error: cannot connect to ubuntu@10.0.0.7:22: … Connection refused
/// ```
///
/// Labels are padded to the longest. A host's stdout lines come first, then
/// its stderr lines (how they interleaved is not known), then its status line
/// (`= exit N` or `= error: …`). Output is decoded as UTF-8 (invalid bytes
/// become U+FFFD); a trailing `\r` is dropped and other control characters
/// except tab are shown as `\xNN`, so a server cannot send escape sequences to
/// the terminal. Nothing is printed here.
pub fn prefixed_lines(results: &[HostResult]) -> Vec<String> {
    let width = results
        .iter()
        .map(|r| r.target.label.chars().count())
        .max()
        .unwrap_or(0);
    let mut lines = Vec::new();
    for r in results {
        let label = format!("{:<width$}", clean(&r.target.label));
        for (mark, bytes) in [('|', &r.stdout), ('!', &r.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            for line in text.lines() {
                lines.push(format!("{label} {mark} {}", clean(line)));
            }
        }
        lines.push(match &r.outcome {
            Outcome::Exited(code) => format!("{label} = exit {code}"),
            Outcome::Failed(why) => format!("{label} = error: {}", clean(why)),
        });
    }
    lines
}

fn clean(s: &str) -> String {
    let s = s.strip_suffix('\r').unwrap_or(s);
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\t' {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Target;

    fn r(label: &str, out: &str, err: &str, outcome: Outcome) -> HostResult {
        HostResult {
            target: Target {
                label: label.into(),
                host: "127.0.0.1".into(),
                port: 22,
                user: String::new(),
            },
            stdout: out.as_bytes().to_vec(),
            stderr: err.as_bytes().to_vec(),
            outcome,
        }
    }

    #[test]
    fn lines_per_host_then_status() {
        let lines = prefixed_lines(&[
            r("i-0aa", "one\ntwo\n", "warn\n", Outcome::Exited(0)),
            r("web-long", "", "", Outcome::Exited(3)),
            r("i-0cc", "partial", "", Outcome::Failed("timed out after 1s".into())),
        ]);
        assert_eq!(
            lines,
            [
                "i-0aa    | one",
                "i-0aa    | two",
                "i-0aa    ! warn",
                "i-0aa    = exit 0",
                "web-long = exit 3",
                "i-0cc    | partial",
                "i-0cc    = error: timed out after 1s",
            ]
        );
    }

    #[test]
    fn terminal_escapes_are_shown_not_sent() {
        let lines = prefixed_lines(&[r("h", "\x1b[31mred\r\n\x07\ttab", "", Outcome::Exited(0))]);
        assert_eq!(lines, ["h | \\x1b[31mred", "h | \\x07\ttab", "h = exit 0"]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let mut res = r("h", "", "", Outcome::Exited(0));
        res.stdout = b"a\xffb\n".to_vec();
        assert_eq!(prefixed_lines(&[res])[0], "h | a\u{fffd}b");
    }
}
