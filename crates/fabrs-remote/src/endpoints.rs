//! The endpoint override file: which address to SSH to for an instance id,
//! for tests (loopback sshds standing in for instances) and bastion setups.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in an endpoints file, at `path:line:col` (both from 1; the
/// column counts characters).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct EndpointError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for EndpointError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path.display(),
            self.line,
            self.col,
            self.message
        )
    }
}

/// Parse an endpoints file: one `ID HOST:PORT` per line, separated by spaces
/// or tabs; `#` starts a comment; blank lines are allowed. IPv6 addresses go
/// in brackets (`[::1]:2222`). `path` is only used in errors.
///
/// ```text
/// # instance      address
/// i-0123abcd      127.0.0.2:2222
/// i-0456ef01      [::1]:2223      # comments here too
/// ```
///
/// The first problem is returned: a missing or extra field, a missing or bad
/// port (1-65535), a host that is not a plain name or address, an id given
/// twice.
pub fn parse_endpoints(path: &Path, text: &str) -> Result<BTreeMap<String, (String, u16)>, EndpointError> {
    let mut map = BTreeMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |col: usize, message: String| EndpointError {
            path: path.to_path_buf(),
            line,
            col,
            message,
        };
        let content = raw.split('#').next().unwrap_or("");
        let fields = fields(content);
        let Some(&(id_col, id)) = fields.first() else {
            continue;
        };
        let Some(&(addr_col, addr)) = fields.get(1) else {
            let end = content.trim_end().chars().count() + 1;
            return Err(err(
                end,
                format!("missing the address after '{id}' (expected ID HOST:PORT)"),
            ));
        };
        if let Some(&(col, extra)) = fields.get(2) {
            return Err(err(
                col,
                format!("unexpected '{extra}' after the address (expected ID HOST:PORT)"),
            ));
        }
        let (host, port_col, port) = split_address(addr).map_err(|(off, m)| err(addr_col + off, m))?;
        crate::check_host(host).map_err(|m| err(addr_col, m))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => {
                return Err(err(
                    addr_col + port_col,
                    format!("bad port '{port}': a number from 1 to 65535"),
                ));
            }
        };
        if let Some(first) = first_line.get(id) {
            return Err(err(id_col, format!("duplicate id '{id}' (first on line {first})")));
        }
        first_line.insert(id.to_string(), line);
        map.insert(id.to_string(), (host.to_string(), port));
    }
    Ok(map)
}

/// Whitespace-separated fields with their 1-based character columns.
fn fields(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<(usize, usize)> = None; // (byte, col)
    for (col, (byte, c)) in s.char_indices().enumerate() {
        match (c.is_whitespace(), start) {
            (false, None) => start = Some((byte, col + 1)),
            (true, Some((b, cl))) => {
                out.push((cl, &s[b..byte]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some((b, cl)) = start {
        out.push((cl, &s[b..]));
    }
    out
}

/// `host:port` or `[v6]:port` → (host, port's char offset in addr, port).
/// Errors carry the char offset of the problem.
fn split_address(addr: &str) -> Result<(&str, usize, &str), (usize, String)> {
    let expected = "expected HOST:PORT, or [IPv6]:PORT";
    if let Some(rest) = addr.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err((0, format!("unclosed '[' in '{addr}' ({expected})")));
        };
        let Some(port) = after.strip_prefix(':') else {
            return Err((0, format!("missing the port in '{addr}' ({expected})")));
        };
        return Ok((host, host.chars().count() + 3, port));
    }
    match addr.rsplit_once(':') {
        None => Err((0, format!("missing the port in '{addr}' ({expected})"))),
        Some((host, _)) if host.contains(':') => Err((0, format!("IPv6 address '{addr}' needs brackets ({expected})"))),
        Some((host, port)) => Ok((host, host.chars().count() + 1, port)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, (String, u16)>, String> {
        parse_endpoints(Path::new("endpoints"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn good_file() {
        let m = parse(
            "# instances\n\ni-0123abcd  127.0.0.2:2222   # web 1\n\ti-0456\t[::1]:22\nsrv-3 host.example:65535\n   \n",
        )
        .unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["i-0123abcd"], ("127.0.0.2".to_string(), 2222));
        assert_eq!(m["i-0456"], ("::1".to_string(), 22));
        assert_eq!(m["srv-3"], ("host.example".to_string(), 65535));
    }

    #[test]
    fn errors_name_line_and_column() {
        assert_eq!(
            parse("a 127.0.0.1:22\n\n  i-1  127.0.0.2:70000\n").unwrap_err(),
            "endpoints:3:18: bad port '70000': a number from 1 to 65535"
        );
        assert_eq!(
            parse("i-1 127.0.0.2:0").unwrap_err(),
            "endpoints:1:15: bad port '0': a number from 1 to 65535"
        );
        assert_eq!(
            parse("i-1 127.0.0.2:ssh").unwrap_err(),
            "endpoints:1:15: bad port 'ssh': a number from 1 to 65535"
        );
        assert_eq!(
            parse("i-1 [::1]:x").unwrap_err(),
            "endpoints:1:11: bad port 'x': a number from 1 to 65535"
        );
        assert_eq!(
            parse("i-1 127.0.0.2:22\n# x\n i-1 127.0.0.3:22\n").unwrap_err(),
            "endpoints:3:2: duplicate id 'i-1' (first on line 1)"
        );
        assert_eq!(
            parse("i-1   # no address\n").unwrap_err(),
            "endpoints:1:4: missing the address after 'i-1' (expected ID HOST:PORT)"
        );
        assert_eq!(
            parse("i-1 127.0.0.2").unwrap_err(),
            "endpoints:1:5: missing the port in '127.0.0.2' (expected HOST:PORT, or [IPv6]:PORT)"
        );
        assert_eq!(
            parse("i-1 127.0.0.2:22 extra").unwrap_err(),
            "endpoints:1:18: unexpected 'extra' after the address (expected ID HOST:PORT)"
        );
        assert_eq!(
            parse("i-1 ::1:22").unwrap_err(),
            "endpoints:1:5: IPv6 address '::1:22' needs brackets (expected HOST:PORT, or [IPv6]:PORT)"
        );
        assert!(
            parse("i-1 -oProxyCommand=x:22")
                .unwrap_err()
                .starts_with("endpoints:1:5: invalid host \"-oProxyCommand=x\"")
        );
        assert!(parse("i-1 :22").unwrap_err().starts_with("endpoints:1:5: empty host"));
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(
            parse("ü-1 127.0.0.2:x").unwrap_err(),
            "endpoints:1:15: bad port 'x': a number from 1 to 65535"
        );
    }
}
