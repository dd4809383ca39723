//! Keeping secrets (passwords inside URLs) out of logs and error bodies.

/// Replace the password of a URL with `***`. A string that does not parse
/// as a URL is replaced whole, as it might still hold a secret.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparseable url>".to_string(),
    }
}

/// The passwords found in the configured URLs, scrubbed from any text
/// (e.g. an error message from a client library) before it is logged or
/// returned.
#[derive(Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    pub fn add_from_url(&mut self, raw: &str) {
        if let Ok(u) = url::Url::parse(raw)
            && let Some(p) = u.password()
        {
            self.add(p.to_string());
            if let Ok(decoded) = percent_decode(p) {
                self.add(decoded);
            }
        }
    }

    pub fn add(&mut self, s: String) {
        // Very short strings would mangle every message; they are weak
        // passwords anyway and are still hidden by `redact_url`.
        if s.len() >= 3 && !self.0.contains(&s) {
            self.0.push(s);
            // Longest first so a secret containing another is fully hidden.
            self.0.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

fn percent_decode(s: &str) -> Result<String, ()> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let h = std::str::from_utf8(&bytes[i + 1..i + 3]).map_err(|_| ())?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| ())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_keeps_rest() {
        assert_eq!(
            redact_url("postgres://app:hunter2@127.0.0.1:6432/app"),
            "postgres://app:***@127.0.0.1:6432/app"
        );
        assert_eq!(redact_url("redis://:pw123@h:6379/0"), "redis://:***@h:6379/0");
        assert_eq!(redact_url("amqp://127.0.0.1:5672/%2f"), "amqp://127.0.0.1:5672/%2f");
        assert_eq!(redact_url("not a url with secret"), "<unparseable url>");
    }

    #[test]
    fn scrubs_raw_and_decoded_passwords() {
        let mut s = Secrets::default();
        s.add_from_url("amqp://user:p%40ss%2Fword@h/%2f");
        let msg = "auth failed for p@ss/word (sent p%40ss%2Fword)";
        let out = s.scrub(msg);
        assert!(!out.contains("p@ss/word") && !out.contains("p%40ss%2Fword"), "{out}");
        assert_eq!(out, "auth failed for *** (sent ***)");
    }
}
