//! Quoting filters, for project template overrides. The context already holds
//! every value validated or quoted for its format (`fabrs_config::formats`);
//! these apply the same types to a value a template composes itself.

use fabrs_config::formats::{RedisValue, ShellWord, SystemdEnvValue, UrlPart, UserlistValue, YamlScalar};
use tera::{Kwargs, State, Tera, TeraResult};

fn refuse(e: fabrs_config::formats::FormatError) -> tera::Error {
    tera::Error::message(e.to_string())
}

pub(crate) fn register(tera: &mut Tera) {
    tera.register_filter("urlencode", |s: &str, _: Kwargs, _: &State| {
        UrlPart::encode(s).to_string()
    });
    tera.register_filter("yaml", |s: &str, _: Kwargs, _: &State| YamlScalar::quote(s).to_string());
    tera.register_filter("redis_quote", |s: &str, _: Kwargs, _: &State| {
        RedisValue::quote(s).to_string()
    });
    tera.register_filter(
        "userlist_quote",
        |s: &str, _: Kwargs, _: &State| -> TeraResult<String> {
            UserlistValue::quote(s).map(|v| v.to_string()).map_err(refuse)
        },
    );
    tera.register_filter("shell", |s: &str, _: Kwargs, _: &State| -> TeraResult<String> {
        ShellWord::quote(s).map(|v| v.to_string()).map_err(refuse)
    });
    tera.register_filter("systemd_env", |s: &str, _: Kwargs, _: &State| -> TeraResult<String> {
        SystemdEnvValue::quote(s).map(|v| v.to_string()).map_err(refuse)
    });
}
