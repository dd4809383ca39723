//! Building remote command lines.

/// `s` as one word of a POSIX shell command line: unchanged when it is made
/// only of characters no shell treats specially, otherwise in single quotes
/// (`'` becomes `'\''`). Works in sh, bash, dash, zsh and (outside
/// interactive history expansion) csh.
pub fn shell_quote(s: &str) -> String {
    let plain =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | ':' | '@' | '%' | '+' | '=');
    if !s.is_empty() && s.chars().all(plain) {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('\'');
    for c in s.chars() {
        if c == '\'' {
            q.push_str("'\\''");
        } else {
            q.push(c);
        }
    }
    q.push('\'');
    q
}

/// The command that turns the maintenance page on (`touch` the flag) or off
/// (`rm -f` it) on a web server. While the flag file exists, fabrs's nginx.conf
/// answers users with 503 and the maintenance page, and the load balancer's
/// `/healthcheck.html` still with 200, so instances stay in service.
///
/// `flag` is the absolute path of the flag (nginx.conf's `paths.maintenance_flag`,
/// `/srv/<project>/maintenance.on` in production); it is quoted. `sudo` runs
/// it through `sudo -n` (fails instead of prompting), for a login user that is
/// not root. Both directions succeed when already in that state.
///
/// # Panics
/// If `flag` is not an absolute path: a relative one would land in the login
/// user's home directory, where nginx never looks.
pub fn maintenance_command(flag: &str, on: bool, sudo: bool) -> String {
    assert!(
        flag.starts_with('/'),
        "maintenance flag must be an absolute path, got {flag:?}"
    );
    let action = if on { "touch --" } else { "rm -f --" };
    let sudo = if sudo { "sudo -n " } else { "" };
    format!("{sudo}{action} {}", shell_quote(flag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `sh -c 'printf %s\\n WORD'` makes of a quoted word.
    fn through_sh(word: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s\\n' {}", shell_quote(word)))
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        for w in [
            "/srv/myproject/maintenance.on",
            "",
            "a b",
            "it's",
            "$(id)",
            "`id`",
            "x;rm -rf /",
            "'",
            "''",
            "tab\there",
            "new\nline",
            "*",
            "~root",
            "-n",
            "back\\slash",
            "ünï",
        ] {
            assert_eq!(through_sh(w), format!("{w}\n"), "word {w:?}");
        }
    }

    #[test]
    fn plain_words_stay_plain() {
        assert_eq!(
            shell_quote("/srv/myproject/maintenance.on"),
            "/srv/myproject/maintenance.on"
        );
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("~root"), "'~root'");
    }

    #[test]
    fn maintenance_commands() {
        assert_eq!(
            maintenance_command("/srv/myproject/maintenance.on", true, false),
            "touch -- /srv/myproject/maintenance.on"
        );
        assert_eq!(
            maintenance_command("/srv/myproject/maintenance.on", false, true),
            "sudo -n rm -f -- /srv/myproject/maintenance.on"
        );
        assert_eq!(
            maintenance_command("/srv/my project/$x.on", true, true),
            "sudo -n touch -- '/srv/my project/$x.on'"
        );
    }

    #[test]
    #[should_panic(expected = "absolute path")]
    fn a_relative_flag_is_a_bug() {
        maintenance_command("maintenance.on", true, false);
    }
}
