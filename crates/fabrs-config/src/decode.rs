//! Typed reads from the node tree. Every failed read records a diagnostic and
//! returns `None`, so decoding carries on and all problems surface at once.

use std::time::Duration;

use ipnet::IpNet;

use crate::diag::{Loc, Sink, did_you_mean, shorten};
use crate::node::{Key, Node, Value};

/// A decoded value with the place it came from, so later checks (references,
/// the security lint) can point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At<T> {
    pub value: T,
    pub loc: Loc,
}

impl<T> At<T> {
    pub fn new(value: T, loc: Loc) -> Self {
        At { value, loc }
    }
}

impl<T> std::ops::Deref for At<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A mapping being decoded: remembers which keys were asked for, so that
/// `finish` can report the rest as unknown, with a hint.
pub(crate) struct Obj<'n> {
    pub path: String,
    pub loc: Loc,
    entries: &'n [(Key, Node)],
    known: Vec<&'static str>,
    /// Required keys that are absent, reported by `finish` (unless an
    /// unknown key there looks like a misspelling of one).
    missing: Vec<&'static str>,
}

impl<'n> Obj<'n> {
    pub fn new(sink: &mut Sink, node: &'n Node, path: &str) -> Option<Obj<'n>> {
        match &node.value {
            Value::Map(entries) => Some(Obj {
                path: path.to_string(),
                loc: node.loc,
                entries,
                known: Vec::new(),
                missing: Vec::new(),
            }),
            // An empty section (`deploy:` with nothing under it) is an empty mapping.
            Value::Null => Some(Obj {
                path: path.to_string(),
                loc: node.loc,
                entries: &[],
                known: Vec::new(),
                missing: Vec::new(),
            }),
            _ => {
                sink.error(node.loc, path, format!("expected a mapping, found {}", node.kind()));
                None
            }
        }
    }

    pub fn opt(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
            .filter(|v| v.value != Value::Null)
    }

    pub fn req(&mut self, sink: &mut Sink, key: &'static str) -> Option<&'n Node> {
        let v = self.opt(key);
        if v.is_none() {
            match self.key_loc(key) {
                // `database:` with nothing under it: there, but empty.
                Some(loc) => {
                    let d = sink.error(loc, &join(&self.path, key), format!("`{key}` is empty"));
                    d.hint = Some(format!("give `{key}` a value (or the keys of its section)"));
                }
                None => self.missing.push(key),
            }
        }
        v
    }

    fn key_loc(&self, key: &str) -> Option<Loc> {
        self.entries.iter().find(|(k, _)| k.name == key).map(|(k, _)| k.loc)
    }

    /// Entries whose keys are data (role names, secret names…), not schema.
    pub fn entries(&mut self) -> &'n [(Key, Node)] {
        self.known.push("*");
        self.entries
    }

    pub fn finish(self, sink: &mut Sink) {
        // A misspelt key (`regoin`) is reported once, as unknown with a hint,
        // not a second time as the key it stands for missing. Only keys that
        // are unknown count: `engine` is not a misspelling of `engine_version`.
        for key in &self.missing {
            let misspelt = self
                .entries
                .iter()
                .any(|(k, _)| !self.known.contains(&k.name.as_str()) && did_you_mean(&k.name, [*key]).is_some());
            if !misspelt || self.known.contains(&"*") {
                sink.error(self.loc, &self.path, format!("missing required key `{key}`"));
            }
        }
        if self.known.contains(&"*") {
            return;
        }
        for (k, _) in self.entries {
            if !self.known.contains(&k.name.as_str()) {
                let d = sink.error(k.loc, &self.path, format!("unknown key `{}`", shorten(&k.name)));
                d.hint = Some(match did_you_mean(&k.name, self.known.iter().copied()) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None => format!("expected one of: {}", self.known.join(", ")),
                });
            }
        }
    }
}

pub(crate) fn string(sink: &mut Sink, node: &Node, path: &str) -> Option<At<String>> {
    match &node.value {
        Value::Str(s) if s.trim().is_empty() => {
            sink.error(node.loc, path, "must not be empty");
            None
        }
        // No file fabrs writes (nor AWS) can hold a NUL character.
        Value::Str(s) if s.contains('\0') => {
            let d = sink.error(node.loc, path, "a NUL character (\\0) is not allowed in a value");
            d.hint = Some("remove the \\0 escape".into());
            None
        }
        Value::Str(s) => Some(At::new(s.clone(), node.loc)),
        _ => {
            sink.error(node.loc, path, format!("expected a string, found {}", node.kind()));
            None
        }
    }
}

pub(crate) fn boolean(sink: &mut Sink, node: &Node, path: &str) -> Option<At<bool>> {
    match &node.value {
        Value::Bool(b) => Some(At::new(*b, node.loc)),
        Value::Str(s) if ["yes", "no", "on", "off", "y", "n"].contains(&s.to_lowercase().as_str()) => {
            let d = sink.error(node.loc, path, format!("expected true or false, found `{s}`"));
            d.hint = Some("YAML 1.1 spellings are not booleans here; write true or false".into());
            None
        }
        _ => {
            sink.error(node.loc, path, format!("expected true or false, found {}", node.kind()));
            None
        }
    }
}

/// An integer within `min..=max`.
pub(crate) fn int(sink: &mut Sink, node: &Node, path: &str, min: i64, max: i64) -> Option<At<u32>> {
    match &node.value {
        Value::Int(i) if (min..=max).contains(i) => Some(At::new(*i as u32, node.loc)),
        Value::Int(i) => {
            sink.error(node.loc, path, format!("{i} is out of range ({min}..={max})"));
            None
        }
        Value::BigInt(text) => {
            let size = if text.starts_with('-') { "small" } else { "large" };
            let d = sink.error(node.loc, path, format!("{} is too {size}", shorten(text)));
            d.hint = Some(format!("a whole number from {min} to {max}"));
            None
        }
        Value::Float(f) => {
            let d = sink.error(node.loc, path, format!("expected an integer, found the number {f}"));
            d.hint = Some(format!("a whole number from {min} to {max}"));
            None
        }
        Value::Str(s) if s.trim().parse::<i128>().is_ok() => {
            let d = sink.error(
                node.loc,
                path,
                format!("expected an integer, found the string \"{}\"", shorten(s)),
            );
            d.hint = Some("remove the quotes".into());
            None
        }
        _ => {
            sink.error(node.loc, path, format!("expected an integer, found {}", node.kind()));
            None
        }
    }
}

pub(crate) fn one_of<'a>(sink: &mut Sink, node: &Node, path: &str, choices: &[&'a str]) -> Option<At<&'a str>> {
    let s = string(sink, node, path)?;
    match choices.iter().find(|c| **c == s.value) {
        Some(c) => Some(At::new(*c, s.loc)),
        None => {
            let d = sink.error(
                s.loc,
                path,
                format!("`{}` is not one of: {}", shorten(&s.value), choices.join(", ")),
            );
            if let Some(m) = did_you_mean(&s.value, choices.iter().copied()) {
                d.hint = Some(format!("did you mean `{m}`?"));
            }
            None
        }
    }
}

pub(crate) fn cidr(sink: &mut Sink, node: &Node, path: &str) -> Option<At<IpNet>> {
    let s = string(sink, node, path)?;
    match s.value.parse::<IpNet>() {
        Ok(net) if net.trunc() != net => {
            let d = sink.error(s.loc, path, format!("`{}` has host bits set", shorten(&s.value)));
            d.hint = Some(format!("did you mean `{}`?", net.trunc()));
            None
        }
        Ok(net) => Some(At::new(net, s.loc)),
        Err(_) => {
            let d = sink.error(
                s.loc,
                path,
                format!("`{}` is not a valid CIDR block", shorten(&s.value)),
            );
            d.hint = Some(if let Ok(ip) = s.value.parse::<std::net::IpAddr>() {
                format!(
                    "a single address is written `{ip}/{}`",
                    if ip.is_ipv4() { 32 } else { 128 }
                )
            } else {
                "write an address and a prefix length, e.g. 203.0.113.0/24".into()
            });
            None
        }
    }
}

/// `30s`, `5m`, `1h`, `1h30m`, or a bare number of seconds; more than zero
/// and at most `max`.
pub(crate) fn duration(sink: &mut Sink, node: &Node, path: &str, max: Duration) -> Option<At<Duration>> {
    let too_long = |sink: &mut Sink, text: &str| {
        let d = sink.error(node.loc, path, format!("`{}` is too long", shorten(text)));
        d.hint = Some(format!("at most {}", show_duration(max)));
    };
    let text = match &node.value {
        Value::Int(i) if *i > 0 => {
            let d = Duration::from_secs(*i as u64);
            if d > max {
                too_long(sink, &i.to_string());
                return None;
            }
            return Some(At::new(d, node.loc));
        }
        Value::Int(i) => i.to_string(),
        Value::BigInt(t) => {
            too_long(sink, t);
            return None;
        }
        Value::Str(s) => s.clone(),
        _ => {
            sink.error(
                node.loc,
                path,
                format!("expected a duration such as `30s` or `10m`, found {}", node.kind()),
            );
            return None;
        }
    };
    match parse_duration_checked(&text) {
        Ok(d) if d.is_zero() => {
            let d = sink.error(
                node.loc,
                path,
                format!("`{}` is zero; a duration here must be more than that", shorten(&text)),
            );
            d.hint = Some("e.g. `30s`".into());
            None
        }
        Ok(d) if d > max => {
            too_long(sink, &text);
            None
        }
        Ok(d) => Some(At::new(d, node.loc)),
        Err(DurationError::TooLong) => {
            too_long(sink, &text);
            None
        }
        Err(DurationError::Invalid) => {
            let d = sink.error(node.loc, path, format!("`{}` is not a duration", shorten(&text)));
            d.hint = Some("use a number with a unit: s, m or h (e.g. `90s`, `10m`, `1h30m`)".into());
            None
        }
    }
}

/// `1h30m`, `90s`: the shortest spelling of a whole number of seconds.
pub(crate) fn show_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 3600 || !s.is_multiple_of(60) {
        return format!("{s}s");
    }
    let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if sec > 0 || out.is_empty() {
        out.push_str(&format!("{sec}s"));
    }
    out
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DurationError {
    Invalid,
    TooLong,
}

pub fn parse_duration(text: &str) -> Option<Duration> {
    parse_duration_checked(text).ok()
}

/// Checked arithmetic throughout: `99999999999h` is too long, never a wrap.
pub(crate) fn parse_duration_checked(text: &str) -> Result<Duration, DurationError> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut saw_unit = false;
    let number = |num: &str| -> Result<u64, DurationError> {
        if num.is_empty() {
            return Err(DurationError::Invalid);
        }
        num.parse::<u64>().map_err(|_| DurationError::TooLong)
    };
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n = number(&num)?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => return Err(DurationError::Invalid),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or(DurationError::TooLong)?;
        saw_unit = true;
    }
    if !num.is_empty() {
        if saw_unit {
            return Err(DurationError::Invalid);
        }
        total = total.checked_add(number(&num)?).ok_or(DurationError::TooLong)?;
    } else if !saw_unit {
        return Err(DurationError::Invalid);
    }
    Ok(Duration::from_secs(total))
}

/// A list; `each` decodes every element (with its index path).
pub(crate) fn list<T>(
    sink: &mut Sink,
    node: &Node,
    path: &str,
    mut each: impl FnMut(&mut Sink, &Node, &str) -> Option<T>,
) -> Option<Vec<T>> {
    match &node.value {
        Value::Seq(items) => {
            let mut out = Vec::new();
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match each(sink, item, &index(path, i)) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(out)
        }
        _ => {
            sink.error(node.loc, path, format!("expected a list, found {}", node.kind()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Some(Duration::from_secs(45)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("1m5"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(
            parse_duration_checked("99999999999999999999h"),
            Err(DurationError::TooLong)
        );
        assert_eq!(parse_duration_checked("5124095576030432h"), Err(DurationError::TooLong));
        assert_eq!(show_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(show_duration(Duration::from_secs(4000)), "4000s");
    }
}
