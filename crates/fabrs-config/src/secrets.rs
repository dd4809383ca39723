//! Secrets: declared by name in the file, resolved from the environment or a
//! file outside the repository only when a command needs their values. A value
//! never appears in `Debug` or `Display` output.

use std::collections::BTreeMap;
use std::fmt;

use crate::diag::{Diagnostics, Sink};
use crate::model::{Environment, SecretSource};

/// A secret's value. Prints as `(sensitive)`; read it with `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> Self {
        SecretValue(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// Every declared secret, resolved.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: BTreeMap<String, SecretValue>,
}

impl Secrets {
    pub fn get(&self, name: &str) -> Option<&SecretValue> {
        self.values.get(name)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// Test and tooling helper: secrets from literal values.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Secrets {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), SecretValue(v.to_string())))
                .collect(),
        }
    }
}

/// Resolve every declared secret; each missing one is a diagnostic at its declaration.
pub fn resolve(env: &Environment, getenv: impl Fn(&str) -> Option<String>) -> Result<Secrets, Diagnostics> {
    let mut sink = Sink::new(&env.file);
    let mut values = BTreeMap::new();
    for decl in env.secrets.values() {
        let path = format!("secrets.{}", decl.name);
        let value = match &decl.source {
            SecretSource::Env(var) => match getenv(var) {
                Some(v) if !v.is_empty() => Some(v),
                _ => {
                    let d = sink.error(decl.loc, &path, format!("secret `{}` is not set", decl.name));
                    d.hint = Some(format!("export {var}"));
                    None
                }
            },
            SecretSource::File(file) => match std::fs::read_to_string(file) {
                Ok(v) if !v.trim_end_matches(['\n', '\r']).is_empty() => {
                    Some(v.trim_end_matches(['\n', '\r']).to_string())
                }
                Ok(_) => {
                    sink.error(
                        decl.loc,
                        &path,
                        format!("secret `{}`: {} is empty", decl.name, file.display()),
                    );
                    None
                }
                Err(e) => {
                    let why = match e.kind() {
                        std::io::ErrorKind::NotFound => "no such file".to_string(),
                        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                        k => k.to_string(),
                    };
                    sink.error(
                        decl.loc,
                        &path,
                        format!("secret `{}`: cannot read {}: {why}", decl.name, file.display()),
                    );
                    None
                }
            },
        };
        if let Some(v) = value {
            if decl.name == env.database.password_secret {
                if let Some(why) = rds_password_problem(&v) {
                    let d = sink.error(
                        decl.loc,
                        &path,
                        format!("secret `{}` cannot be the RDS master password: {why}", decl.name),
                    );
                    d.hint = Some("RDS takes 8 to 128 printable ASCII characters other than / \" @ and space".into());
                    continue;
                }
            }
            values.insert(decl.name.clone(), SecretValue(v));
        }
    }
    if sink.diags.is_empty() {
        Ok(Secrets { values })
    } else {
        let source = std::fs::read_to_string(&env.file).unwrap_or_default();
        Err(Diagnostics {
            file: env.file.clone(),
            text: source,
            diagnostics: sink.diags,
        })
    }
}

/// RDS's rule for a master password, described without showing the value.
pub fn rds_password_problem(password: &str) -> Option<String> {
    let n = password.chars().count();
    if !(8..=128).contains(&n) {
        return Some(format!("it is {n} characters long"));
    }
    let bad = |c: char| !(' '..='~').contains(&c) || matches!(c, '/' | '"' | '@' | ' ');
    password
        .chars()
        .any(bad)
        .then(|| "it holds a character RDS refuses (/, \", @, a space, or one outside printable ASCII)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_password_rules() {
        assert_eq!(rds_password_problem("correct-horse-battery"), None);
        assert!(rds_password_problem("short").unwrap().contains("5 characters"));
        assert!(rds_password_problem(&"x".repeat(129)).is_some());
        for bad in [
            "has space1",
            "slash/word",
            "quote\"word",
            "at@sign99",
            "tab\tword1",
            "naïve-pass",
        ] {
            let p = rds_password_problem(bad).unwrap();
            assert!(!p.contains(bad), "{p}");
        }
    }

    #[test]
    fn never_prints_the_value() {
        let s = Secrets::from_pairs([("db_password", "hunter2hunter2")]);
        let shown = format!("{s:?} {}", s.get("db_password").unwrap());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(s.get("db_password").unwrap().expose(), "hunter2hunter2");
    }
}
