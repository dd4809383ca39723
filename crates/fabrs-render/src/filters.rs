//! Escaping filters: every value that reaches a file goes through the quoting
//! of that file's format, so no secret or name can break out of its field.

use tera::{Kwargs, State, Tera};

pub(crate) fn register(tera: &mut Tera) {
    tera.register_filter("urlencode", |s: &str, _: Kwargs, _: &State| urlencode(s));
    tera.register_filter("yaml", |s: &str, _: Kwargs, _: &State| yaml(s));
    tera.register_filter("userlist_quote", |s: &str, _: Kwargs, _: &State| s.replace('"', "\"\""));
    tera.register_filter("redis_quote", |s: &str, _: Kwargs, _: &State| {
        s.replace('\\', "\\\\").replace('"', "\\\"")
    });
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A YAML scalar that reads back as exactly `s`: a JSON string is valid YAML.
pub fn yaml(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencode_keeps_only_unreserved() {
        assert_eq!(urlencode("a b:@/%~"), "a%20b%3A%40%2F%25~");
        assert_eq!(urlencode("__secret_db_password__"), "__secret_db_password__");
    }

    #[test]
    fn yaml_quotes() {
        assert_eq!(yaml("a: b\n"), "\"a: b\\n\"");
    }
}
