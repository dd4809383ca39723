//! A release revision: the name a build of the application is published and
//! deployed under (`3f9c2e1`, `v1.4.2`). Validated once, where it enters
//! (command line, saved plan, tag read back); absence is `Option<Revision>`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 1-64 ASCII letters, digits, `.`, `_` or `-`, not starting with `-` or `.`,
/// and not `none` (the word that stands for "no revision" on the wire: in
/// tags, user-data marker lines and launch configuration names).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(String);

/// What a place that has no revision writes instead (tags, marker lines,
/// launch configuration names, messages). Never a valid revision.
pub const NO_REVISION: &str = "none";

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a usable revision: 1-64 letters, digits, '.', '_' or '-' (not starting with '-' or '.'), and not `none`"
)]
pub struct BadRevision(pub String);

impl Revision {
    pub fn parse(s: &str) -> Result<Revision, BadRevision> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s != NO_REVISION
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
            && !s.starts_with(['-', '.']);
        if ok {
            Ok(Revision(s.to_string()))
        } else {
            Err(BadRevision(s.to_string()))
        }
    }

    /// A revision as written on the wire, where `none` means absent:
    /// `Ok(None)` for `none` (and the empty string), the revision otherwise.
    pub fn parse_wire(s: &str) -> Result<Option<Revision>, BadRevision> {
        if s == NO_REVISION || s.is_empty() {
            Ok(None)
        } else {
            Revision::parse(s).map(Some)
        }
    }

    /// A revision read back from the cloud (a tag, a marker line): `none`,
    /// empty or not a valid revision (edited by hand) all count as none.
    pub fn read_back(s: &str) -> Option<Revision> {
        Revision::parse_wire(s).ok().flatten()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `rev` as written on the wire: the revision, or `none`.
pub fn or_none(rev: Option<&Revision>) -> &str {
    rev.map_or(NO_REVISION, Revision::as_str)
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Revision {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for Revision {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Revision {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Revision::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde for `Option<Revision>` in its wire form: `None` is the string
/// `none`. Specs use it so that their serialized form (which launch
/// configuration names hash, and which saved plans hold) stays what it was
/// when the revision was a plain string.
pub mod serde_or_none {
    use super::*;

    pub fn serialize<S: Serializer>(rev: &Option<Revision>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(or_none(rev.as_ref()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Revision>, D::Error> {
        let s = String::deserialize(d)?;
        Revision::parse_wire(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid() {
        for good in ["3f9c2e1", "v1.4.2", "a_b-c", &"x".repeat(64)] {
            assert_eq!(Revision::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "none", "-x", ".x", "a b", "a/b", "$(rm)", &"x".repeat(65)] {
            assert!(Revision::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn wire_form() {
        assert_eq!(Revision::parse_wire("none"), Ok(None));
        assert_eq!(Revision::parse_wire("v1").unwrap().unwrap().as_str(), "v1");
        assert_eq!(or_none(None), "none");
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct S {
            #[serde(with = "serde_or_none")]
            r: Option<Revision>,
        }
        let none = serde_json::to_string(&S { r: None }).unwrap();
        assert_eq!(none, r#"{"r":"none"}"#);
        assert_eq!(serde_json::from_str::<S>(&none).unwrap(), S { r: None });
        assert!(serde_json::from_str::<S>(r#"{"r":"a b"}"#).is_err());
    }
}
