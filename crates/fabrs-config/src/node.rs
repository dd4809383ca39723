//! The YAML document as a tree of nodes, each with its source location.
//!
//! serde stops at the first error; to report every problem of a file at once,
//! fabrs parses the YAML (syntax, duplicate keys, anchors and merge keys are
//! serde-saphyr's job) into this generic tree, then decodes the tree itself.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::diag::Loc;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer literal too large for i64 (kept as written, for the message).
    BigInt(String),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub loc: Loc,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub loc: Loc,
    pub name: String,
}

impl Node {
    /// What a user would call this node's type, for "expected X, found Y".
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::BigInt(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

pub(crate) fn loc_of(l: &serde_saphyr::Location) -> Loc {
    Loc {
        line: l.line() as u32,
        col: l.column() as u32,
        len: l.span().len() as u32,
    }
}

/// The raw value as serde-saphyr hands it over, wrapped in `Spanned` at every level.
struct Raw(Value);

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Raw;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Raw, E> {
                Ok(Raw(Value::Null))
            }
            fn visit_none<E>(self) -> Result<Raw, E> {
                Ok(Raw(Value::Null))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
                Ok(Raw(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
                Ok(Raw(Value::Int(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
                Ok(Raw(match i64::try_from(v) {
                    Ok(v) => Value::Int(v),
                    Err(_) => Value::BigInt(v.to_string()),
                }))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
                Ok(Raw(match i64::try_from(v) {
                    Ok(v) => Value::Int(v),
                    Err(_) => Value::BigInt(v.to_string()),
                }))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
                Ok(Raw(match i64::try_from(v) {
                    Ok(v) => Value::Int(v),
                    Err(_) => Value::BigInt(v.to_string()),
                }))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
                Ok(Raw(Value::Float(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
                Ok(Raw(Value::Str(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Raw, E> {
                Ok(Raw(Value::Str(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element::<Spanned<Raw>>()? {
                    items.push(node(item));
                }
                Ok(Raw(Value::Seq(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Raw, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = a.next_entry::<Spanned<KeyName>, Spanned<Raw>>()? {
                    let key = Key {
                        loc: loc_of(&k.referenced),
                        name: k.value.0,
                    };
                    entries.push((key, node(v)));
                }
                Ok(Raw(Value::Map(entries)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key: any scalar, kept as its text (`80: x` gives the key "80").
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<KeyName, E> {
                Ok(KeyName("null".to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn node(s: Spanned<Raw>) -> Node {
    Node {
        loc: loc_of(&s.referenced),
        value: s.value.0,
    }
}

/// A YAML syntax error (or a duplicate key), with where the parser stopped.
#[derive(Debug)]
pub struct SyntaxError {
    pub loc: Loc,
    pub message: String,
    pub hint: Option<String>,
}

pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    // `yes`/`no`/`on`/`off` stay strings: in an infrastructure file, `on` must
    // not silently become `true`.
    options.strict_booleans = true;
    // An environment file has a few hundred values; these limits stop alias
    // bombs and absurd nesting in milliseconds, with a plain message below.
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = MAX_NODES;
    budget.max_events = MAX_NODES * 2;
    budget.max_aliases = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    options.budget = Some(budget);
    match serde_saphyr::from_str_with_options::<Spanned<Raw>>(source, options) {
        Ok(n) => {
            let mut n = node(n);
            big_numbers(&mut n, source);
            Ok(n)
        }
        Err(e) => Err(translate(&e)),
    }
}

/// More values than any environment file needs (staging has about 150).
pub const MAX_NODES: usize = 20_000;

/// A number too large for an integer reaches us as a float; when the source
/// text is an integer literal, keep it as one (as written) so the message can
/// say "too large" rather than "found a number".
fn big_numbers(n: &mut Node, source: &str) {
    match &mut n.value {
        Value::Float(_) => {
            if let Some(text) = token_at(source, n.loc) {
                let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
                if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit() || c == '_') {
                    n.value = Value::BigInt(text);
                }
            }
        }
        Value::Seq(items) => items.iter_mut().for_each(|i| big_numbers(i, source)),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| big_numbers(v, source)),
        _ => {}
    }
}

/// The plain scalar starting at `loc` (up to the next space, `,` or bracket).
fn token_at(source: &str, loc: Loc) -> Option<String> {
    let line = source.lines().nth(loc.line.checked_sub(1)? as usize)?;
    let text: String = line
        .chars()
        .skip(loc.col.checked_sub(1)? as usize)
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
        .take(200)
        .collect();
    Some(text)
}

/// The parser's error in the user's words: no API names, no internal types.
fn translate(e: &serde_saphyr::Error) -> SyntaxError {
    use serde_saphyr::Error as E;
    let loc = e.location().map(|l| loc_of(&l)).unwrap_or(Loc {
        line: 1,
        col: 1,
        len: 0,
    });
    let plain = |message: &str, hint: &str| SyntaxError {
        loc,
        message: message.to_string(),
        hint: Some(hint.to_string()),
    };
    let inner = e.without_snippet();
    let mut message = inner.to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    let lower_msg = message.to_lowercase();
    let budget = lower_msg.starts_with("budget breached")
        || lower_msg.contains("alias replay")
        || lower_msg.contains("alias expansion");
    match inner {
        _ if budget => {
            let lower = message.to_lowercase();
            if lower.contains("depth") {
                return plain(
                    "the file is nested too deeply",
                    "an environment file is a few levels of mappings and lists",
                );
            }
            if lower.contains("document") {
                return plain(
                    "a second YAML document starts here; an environment file is one document",
                    "remove this `---` and what follows it",
                );
            }
            return plain(
                &format!(
                    "the file expands to more than {MAX_NODES} values (anchors and aliases repeated inside each other?)"
                ),
                "an environment file has a few hundred values: write them out, or use fewer aliases",
            );
        }
        E::MultipleDocuments { .. } => {
            return plain(
                "a second YAML document starts here; an environment file is one document",
                "remove this `---` and what follows it, or put each environment in its own file",
            );
        }
        E::Budget { .. }
        | E::AliasReplayCounterOverflow { .. }
        | E::AliasReplayLimitExceeded { .. }
        | E::AliasExpansionLimitExceeded { .. }
        | E::AliasReplayStackDepthExceeded { .. } => {
            let lower = message.to_lowercase();
            if lower.contains("depth") {
                return plain(
                    "the file is nested too deeply",
                    "an environment file is a few levels of mappings and lists",
                );
            }
            if lower.contains("document") {
                return plain(
                    "a second YAML document starts here; an environment file is one document",
                    "remove this `---` and what follows it",
                );
            }
            return plain(
                &format!(
                    "the file expands to more than {MAX_NODES} values (anchors and aliases repeated inside each other?)"
                ),
                "an environment file has a few hundred values: write them out, or use fewer aliases",
            );
        }
        E::NonFiniteFloat { .. } => {
            return plain(
                "this number is too large (or not a number)",
                "write a plain integer or a duration such as `30s`",
            );
        }
        E::InvalidUtf8Input => {
            return plain("the file is not valid UTF-8", "save the file as UTF-8");
        }
        _ => {}
    }
    if message.contains("recursion limit") {
        return plain(
            "the file is nested too deeply",
            "an environment file is a few levels of mappings and lists",
        );
    }
    if message.starts_with("simple key expected") {
        return plain(
            "expected `key: value` here (a `:` is missing, or the key is longer than 1024 characters)",
            "write each setting as `key: value` on its own line",
        );
    }
    if message.starts_with("tabs disallowed") {
        return plain(
            "a tab in the indentation; YAML indents with spaces",
            "replace the tab with spaces",
        );
    }
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(',').next().unwrap_or(rest);
        return SyntaxError {
            loc,
            message: format!("duplicate key `{}`", crate::diag::shorten(key)),
            hint: None,
        };
    }
    SyntaxError {
        loc,
        message: crate::diag::shorten_to(&message, 200),
        hint: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_locations_and_merges() {
        let n = parse("a: &x\n  k: 1\nb:\n  <<: *x\n  j: on\n").unwrap();
        let Value::Map(entries) = &n.value else { panic!() };
        assert_eq!(entries[1].0.name, "b");
        assert_eq!(entries[1].0.loc.line, 3);
        let Value::Map(b) = &entries[1].1.value else { panic!() };
        let names: Vec<_> = b.iter().map(|(k, _)| k.name.as_str()).collect();
        assert!(names.contains(&"k") && names.contains(&"j"), "{names:?}");
        let j = b.iter().find(|(k, _)| k.name == "j").unwrap();
        assert_eq!(j.1.value, Value::Str("on".into()));
        assert_eq!((j.1.loc.line, j.1.loc.col), (5, 6));
    }

    #[test]
    fn duplicate_key_is_an_error_with_location() {
        let e = parse("a: 1\nb: 2\na: 3\n").err().unwrap();
        assert_eq!((e.loc.line, e.loc.col), (3, 1));
        assert_eq!(e.message, "duplicate key `a`");
    }
}
