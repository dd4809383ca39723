//! Values in the syntax of the files fabrs renders.
//!
//! Every string that reaches a rendered file (nginx, pgbouncer, Redis,
//! RabbitMQ, systemd, shell, cloud-init YAML, URLs) is one of these types.
//! Each can only be built valid for its format: either it is *validated*
//! (`parse` refuses what the format cannot hold safely, e.g. an nginx server
//! name with `;`) or it is *quoted* (`quote` escapes what the format treats
//! specially and refuses only what the format cannot represent at all, e.g. a
//! line break in pgbouncer's auth file). fabrs-render's context holds only
//! these, so a template cannot receive an unchecked string.
//!
//! Pure functions, no I/O: the validators run at `fabrs validate` time (with
//! the value's file:line:col) as well as at render time. Each format has a
//! test that the real program reads the value back exactly
//! (`crates/fabrs-render/tests/formats.rs`).

use std::fmt;

/// Why a value cannot be written in a format: the message says what is wrong,
/// the hint how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.hint)
    }
}

impl std::error::Error for FormatError {}

fn err(message: impl Into<String>, hint: impl Into<String>) -> FormatError {
    FormatError {
        message: message.into(),
        hint: hint.into(),
    }
}

/// Shorten a value for a message (the environment file may hold megabytes).
pub fn shorten(s: &str) -> String {
    const MAX: usize = 60;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    out
}

macro_rules! string_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The value as written in its format.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

// ---------------------------------------------------------------- validated

string_type!(
    /// One `server_name` entry of nginx: a host name (`www.example.com`), a
    /// wildcard (`*.example.com`, `.example.com`, `www.example.*`) or `_`.
    /// Regular expressions (`~…`) are refused: they are nginx syntax of their own.
    NginxServerName
);

impl NginxServerName {
    pub fn parse(s: &str) -> Result<NginxServerName, FormatError> {
        const HINT: &str =
            "a host name such as www.example.com, or a wildcard: *.example.com, .example.com, www.example.*";
        if s == "_" {
            return Ok(NginxServerName(s.into()));
        }
        if s.is_empty() {
            return Err(err("an empty server name", HINT));
        }
        if s.starts_with('~') {
            return Err(err(
                format!("`{}`: regular expression server names are not supported", shorten(s)),
                HINT,
            ));
        }
        if let Some(bad) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '*' | '_')))
        {
            return Err(err(
                format!(
                    "`{}` is not a server name: {} is not allowed in a host name",
                    shorten(s),
                    describe(bad)
                ),
                format!("{HINT}; internationalized names in their xn-- (punycode) form"),
            ));
        }
        if s.len() > 253 {
            return Err(err(format!("`{}` is longer than 253 characters", shorten(s)), HINT));
        }
        // nginx allows one `*`, as the whole first or last label; `.example.com` too.
        let body = if let Some(rest) = s.strip_prefix("*.") {
            rest
        } else if let Some(rest) = s.strip_suffix(".*") {
            rest
        } else if let Some(rest) = s.strip_prefix('.') {
            rest
        } else {
            s
        };
        let labels_ok = !body.is_empty()
            && body.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && !l.contains('*') && !l.starts_with('-') && !l.ends_with('-')
            });
        if !labels_ok {
            return Err(err(
                format!("`{}` is not a server name", shorten(s)),
                format!(
                    "{HINT}; labels of 1-63 letters, digits and '-', not starting or ending with '-', one '*' at most"
                ),
            ));
        }
        Ok(NginxServerName(s.to_string()))
    }
}

string_type!(
    /// A host name or IPv4 address (an RDS endpoint, a cache server's private
    /// name): safe as a URL host, a libpq `host=` value and a config word.
    Hostname
);

impl Hostname {
    pub fn parse(s: &str) -> Result<Hostname, FormatError> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if ok {
            Ok(Hostname(s.to_string()))
        } else {
            Err(err(
                format!("`{}` is not a host name", shorten(s)),
                "labels of letters, digits and '-', separated by '.'",
            ))
        }
    }
}

string_type!(
    /// A word that needs no quoting in the formats fabrs writes: letters,
    /// digits and `._/+-`, not starting with `-`. Names, paths, revisions.
    /// Safe bare in nginx, INI, shell (as a whole word or inside double
    /// quotes), systemd unit settings (a unit file has no general quoting:
    /// `%` is a specifier, `\` and quotes differ per setting, so its values
    /// are words) and URL paths; in YAML it is a plain
    /// scalar but may read as a number or boolean (`123`, `yes`), so YAML
    /// gets it through `YamlScalar`.
    Word
);

impl Word {
    pub fn parse(s: &str) -> Result<Word, FormatError> {
        let ok = !s.is_empty()
            && !s.starts_with('-')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '+' | '-'));
        if ok {
            Ok(Word(s.to_string()))
        } else {
            Err(err(
                format!("`{}` cannot be written unquoted in a configuration file", shorten(s)),
                "letters, digits and . _ / + -, not starting with -",
            ))
        }
    }
}

string_type!(
    /// A value of pgbouncer's INI file (libusual's parser: `key = value` to the
    /// end of the line, surrounding spaces dropped, `;` and `#` start comments
    /// at a line's start). Validated: no line breaks, control characters,
    /// surrounding spaces, quotes, `;` or `#`.
    IniValue
);

impl IniValue {
    pub fn parse(s: &str) -> Result<IniValue, FormatError> {
        let ok = !s.is_empty()
            && s.trim() == s
            && !s
                .chars()
                .any(|c| c.is_control() || matches!(c, ';' | '#' | '"' | '\'' | '=' | '[' | ']'));
        if ok {
            Ok(IniValue(s.to_string()))
        } else {
            Err(err(
                format!("`{}` cannot be written as a pgbouncer.ini value", shorten(s)),
                "no line breaks, control characters, quotes, ; # = [ ] or surrounding spaces",
            ))
        }
    }
}

// ------------------------------------------------------------------- quoted

/// Printable ASCII that every quoting below leaves bare (readability of
/// rendered files): letters, digits and `._/@+:,=%-`.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '@' | '+' | ':' | ',' | '=' | '%' | '-')
        })
}

fn no_nul(s: &str, format: &str) -> Result<(), FormatError> {
    if s.contains('\0') {
        return Err(err(
            format!("a NUL character cannot be written in {format}"),
            "remove the NUL character from the value",
        ));
    }
    Ok(())
}

string_type!(
    /// One POSIX shell word: bare when only safe characters, else in single
    /// quotes (`'` written as `'\''`). Reads back exactly in sh, dash and bash.
    ShellWord
);

impl ShellWord {
    pub fn quote(s: &str) -> Result<ShellWord, FormatError> {
        no_nul(s, "a shell script")?;
        if plain(s) && !s.starts_with('-') && !s.contains(['%', '=']) {
            return Ok(ShellWord(s.to_string()));
        }
        Ok(ShellWord(format!("'{}'", s.replace('\'', "'\\''"))))
    }
}

string_type!(
    /// A value of a systemd environment file (`EnvironmentFile=`, also read by
    /// `systemd-run -p EnvironmentFile=`): bare when safe, else in double
    /// quotes with `\`, `"`, `` ` `` and `$` escaped. Line breaks, tabs and
    /// other characters are kept inside the quotes (systemd's env-file parser).
    SystemdEnvValue
);

impl SystemdEnvValue {
    pub fn quote(s: &str) -> Result<SystemdEnvValue, FormatError> {
        no_nul(s, "a systemd environment file")?;
        if s.is_empty() {
            return Ok(SystemdEnvValue(String::new()));
        }
        if plain(s) {
            return Ok(SystemdEnvValue(s.to_string()));
        }
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            if matches!(c, '\\' | '"' | '`' | '$') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        Ok(SystemdEnvValue(out))
    }
}

string_type!(
    /// Part of a URL (user name, password, path segment): every byte but
    /// RFC 3986's unreserved characters percent-encoded.
    UrlPart
);

impl UrlPart {
    pub fn encode(s: &str) -> UrlPart {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        UrlPart(out)
    }
}

string_type!(
    /// A YAML scalar (cloud-init): a double-quoted string with every character
    /// YAML treats specially or may not hold raw escaped, so YAML 1.1 (PyYAML,
    /// cloud-init's loader) and 1.2 read back exactly the string.
    YamlScalar
);

impl YamlScalar {
    pub fn quote(s: &str) -> YamlScalar {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                c if yaml_printable(c) => out.push(c),
                c if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
                c if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push_str(&format!("\\U{:08X}", c as u32)),
            }
        }
        out.push('"');
        YamlScalar(out)
    }
}

/// Characters that may stand raw inside a YAML scalar and mean only
/// themselves in YAML 1.1 and 1.2: printable, and not a YAML 1.1 line break
/// (NEL, LS, PS) or a byte order mark.
fn yaml_printable(c: char) -> bool {
    let u = c as u32;
    (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u) && u != 0x2028 && u != 0x2029
        || (0xE000..=0xFFFD).contains(&u) && u != 0xFEFF
        || (0x10000..=0x10FFFF).contains(&u)
}

/// How a file's content is embedded in cloud-init's `write_files`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct YamlFileContent {
    /// The text after `content: ` (a literal block, or base64).
    pub content: String,
    /// `Some("b64")` when the content is base64.
    pub encoding: Option<&'static str>,
}

impl YamlFileContent {
    /// `content` for a `write_files` entry whose keys sit at column `key_indent`:
    /// a literal block scalar (readable) with an explicit indentation indicator
    /// (so leading spaces of the first line are content), when the content is
    /// one or more lines each ending in a line break and every character may
    /// stand raw in a block; otherwise base64 (`encoding: b64`), which
    /// cloud-init decodes to exactly these bytes.
    pub fn embed(content: &str, key_indent: usize) -> YamlFileContent {
        let body = content.trim_end_matches('\n');
        let block_safe = !body.is_empty() && body.chars().all(|c| c == '\n' || c == '\t' || yaml_printable(c));
        if !block_safe {
            return YamlFileContent {
                content: base64(content.as_bytes()),
                encoding: Some("b64"),
            };
        }
        // Chomping: strip (no final line break), clip (one), keep (more).
        let chomp = match content.len() - body.len() {
            0 => "-",
            1 => "",
            _ => "+",
        };
        let pad = " ".repeat(key_indent + 2);
        let mut out = format!("|2{chomp}");
        let lines = content.strip_suffix('\n').unwrap_or(content);
        for line in lines.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&pad);
                out.push_str(line);
            }
        }
        YamlFileContent {
            content: out,
            encoding: None,
        }
    }
}

/// Standard base64 with padding (RFC 4648), as cloud-init's `b64` expects.
pub fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

string_type!(
    /// A field of pgbouncer's `auth_file` (userlist.txt): in double quotes,
    /// `"` doubled. The file is read line by line and has no escape for a line
    /// break, so CR and LF are refused.
    UserlistValue
);

impl UserlistValue {
    pub fn quote(s: &str) -> Result<UserlistValue, FormatError> {
        no_nul(s, "pgbouncer's auth file")?;
        if s.contains(['\n', '\r']) {
            return Err(err(
                "a line break cannot be written in pgbouncer's auth file (userlist.txt)",
                "choose a password without line breaks",
            ));
        }
        Ok(UserlistValue(format!("\"{}\"", s.replace('"', "\"\""))))
    }
}

string_type!(
    /// A Redis configuration argument: in double quotes, with `\` and `"`
    /// escaped and every control character as `\n`, `\r`, `\t` or `\xHH`
    /// (Redis's `sdssplitargs`), so any password reads back exactly.
    RedisValue
);

impl RedisValue {
    pub fn quote(s: &str) -> RedisValue {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('"');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c as u32 == 0x7F => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        RedisValue(out)
    }
}

string_type!(
    /// RabbitMQ definitions (the JSON `rabbitmqctl import_definitions` reads)
    /// creating one user with full permissions on the `/` vhost. Passwords go
    /// through JSON, not `rabbitmqctl add_user`, which trims a password read
    /// from standard input and whose Debian wrapper re-evaluates arguments in
    /// a shell.
    RabbitDefinitions
);

impl RabbitDefinitions {
    pub fn user(name: &str, password: &str) -> Result<RabbitDefinitions, FormatError> {
        no_nul(password, "a RabbitMQ password")?;
        let doc = serde_json::json!({
            "users": [{ "name": name, "password": password, "tags": "" }],
            "permissions": [{ "user": name, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*" }],
        });
        let mut text = serde_json::to_string_pretty(&doc).expect("JSON of strings");
        text.push('\n');
        Ok(RabbitDefinitions(text))
    }
}

fn describe(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        c if c.is_control() => format!("the control character {:?}", c),
        c => format!("`{c}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        for ok in [
            "_",
            "example.com",
            "*.example.com",
            ".example.com",
            "www.example.*",
            "a-b.c_d.example",
            "localhost",
            "xn--bcher-kva.example",
        ] {
            assert!(NginxServerName::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a.com; return 200",
            "a.com b.com",
            "~^www\\.",
            "a..com",
            "-a.com",
            "a-.com",
            "*.*.com",
            "a*.com",
            "bücher.example",
            "a.com\n",
            "a{b}.com",
            "$host",
            "a'b",
            "*",
        ] {
            assert!(NginxServerName::parse(bad).is_err(), "{bad}");
        }
        let e = NginxServerName::parse("a.com; return 200").unwrap_err();
        assert!(e.message.contains("`;`"), "{e}");
    }

    #[test]
    fn words_and_hosts() {
        assert!(Word::parse("/srv/myproject").is_ok());
        assert!(Word::parse("-x").is_err());
        assert!(Word::parse("a b").is_err());
        assert!(Hostname::parse("db.abc.us-east-1.rds.amazonaws.com").is_ok());
        assert!(Hostname::parse("127.0.0.1").is_ok());
        assert!(Hostname::parse("a b").is_err());
        assert!(Hostname::parse("a:b").is_err());
        assert!(IniValue::parse("/etc/pgbouncer/userlist.txt").is_ok());
        assert!(IniValue::parse("a;b").is_err());
        assert!(IniValue::parse(" a").is_err());
    }

    #[test]
    fn shell_words() {
        assert_eq!(ShellWord::quote("us-east-1").unwrap().as_str(), "us-east-1");
        assert_eq!(ShellWord::quote("a'b c").unwrap().as_str(), "'a'\\''b c'");
        assert_eq!(ShellWord::quote("").unwrap().as_str(), "''");
        assert_eq!(ShellWord::quote("-n").unwrap().as_str(), "'-n'");
        assert!(ShellWord::quote("a\0").is_err());
    }

    #[test]
    fn systemd_env() {
        assert_eq!(SystemdEnvValue::quote("abc").unwrap().as_str(), "abc");
        assert_eq!(
            SystemdEnvValue::quote(" a\"$`\\").unwrap().as_str(),
            "\" a\\\"\\$\\`\\\\\""
        );
    }

    #[test]
    fn urls() {
        assert_eq!(UrlPart::encode("a b:@/%~").as_str(), "a%20b%3A%40%2F%25~");
        assert_eq!(
            UrlPart::encode("__secret_db_password__").as_str(),
            "__secret_db_password__"
        );
    }

    #[test]
    fn yaml() {
        assert_eq!(YamlScalar::quote("a: b\n").as_str(), "\"a: b\\n\"");
        assert_eq!(
            YamlScalar::quote("\u{85}\u{2028}\u{feff}\u{7f}").as_str(),
            "\"\\x85\\u2028\\uFEFF\\x7F\""
        );
    }

    #[test]
    fn file_content() {
        let c = YamlFileContent::embed("  lead\n\nx  \n", 4);
        assert_eq!(c.content, "|2\n        lead\n\n      x  ");
        assert_eq!(c.encoding, None);
        assert_eq!(YamlFileContent::embed("a", 4).content, "|2-\n      a");
        assert_eq!(YamlFileContent::embed("a\n\n", 4).content, "|2+\n      a\n");
        for b64 in ["", "\n\n", "cr\r\n", "nel\u{85}\n", "bom\u{feff}"] {
            assert_eq!(YamlFileContent::embed(b64, 4).encoding, Some("b64"), "{b64:?}");
        }
        assert_eq!(base64(b"pw\n"), "cHcK");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn userlist_and_redis() {
        assert_eq!(UserlistValue::quote("a\"b").unwrap().as_str(), "\"a\"\"b\"");
        assert!(UserlistValue::quote("a\nb").is_err());
        assert_eq!(RedisValue::quote("a\"\\\n\x01").as_str(), "\"a\\\"\\\\\\n\\x01\"");
    }

    #[test]
    fn rabbit_definitions_are_json() {
        let d = RabbitDefinitions::user("app", " p\"w ").unwrap();
        let v: serde_json::Value = serde_json::from_str(d.as_str()).unwrap();
        assert_eq!(v["users"][0]["password"], " p\"w ");
    }
}
