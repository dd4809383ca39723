//! The values templates see.

use fabrs_config::formats::{
    FormatError, Hostname, IniValue, NginxServerName, RedisValue, ShellWord, SystemdEnvValue, UrlPart, UserlistValue,
    Word, YamlScalar,
};
use fabrs_config::network::{POSTGRES_PORT, cache_port, queue_port};
use fabrs_config::{CacheEngine, Environment, QueueEngine, RoleKind};
use serde::Serialize;
use serde_json::json;

use crate::{Options, RenderError, SecretMode, placeholder, token};

/// Addresses that exist only once resources do. `fabrs render` shows
/// placeholders in the reserved `.invalid` domain; apply fills in the real ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    pub db_master_host: String,
    pub db_replica_host: Option<String>,
    pub cache_host: String,
}

impl Facts {
    pub fn placeholders(env: &Environment) -> Facts {
        Facts {
            db_master_host: "db-master.fabrs.invalid".into(),
            db_replica_host: (env.database.replicas > 0).then(|| "db-replica.fabrs.invalid".into()),
            cache_host: "cache.fabrs.invalid".into(),
        }
    }
}

/// Ports and paths on the server. Production values by default; a test run
/// moves them (high ports, a temp prefix) without touching a directive.
#[derive(Clone, Debug)]
pub struct Layout {
    pub http_port: u16,
    pub https_port: u16,
    pub nginx_user: String,
    pub nginx_pid: String,
    pub nginx_error_log: String,
    pub nginx_access_log: String,
    pub nginx_mime_types: String,
    /// Set for unprivileged runs: the five *_temp_path directives go under it.
    pub nginx_temp_dir: Option<String>,
    pub tls_certificate: String,
    pub tls_key: String,
    pub pgbouncer_port: u16,
    pub pgbouncer_ini: String,
    pub pgbouncer_auth_file: String,
    pub pgbouncer_unix_socket_dir: String,
    pub pgbouncer_logfile: String,
    pub pgbouncer_pidfile: String,
    pub db_tls_mode: String,
    pub db_tls_ca_file: String,
    pub db_port: u16,
    /// `/srv/<project>` unless set.
    pub srv: Option<String>,
    /// `/etc/<project>` unless set.
    pub etc: Option<String>,
}

impl Layout {
    pub fn production() -> Layout {
        Layout {
            http_port: 80,
            https_port: 443,
            nginx_user: "www-data".into(),
            nginx_pid: "/run/nginx.pid".into(),
            nginx_error_log: "/var/log/nginx/error.log".into(),
            nginx_access_log: "/var/log/nginx/access.log".into(),
            nginx_mime_types: "/etc/nginx/mime.types".into(),
            nginx_temp_dir: None,
            tls_certificate: "/etc/ssl/certs/ssl-cert-snakeoil.pem".into(),
            tls_key: "/etc/ssl/private/ssl-cert-snakeoil.key".into(),
            pgbouncer_port: 6432,
            pgbouncer_ini: "/etc/pgbouncer/pgbouncer.ini".into(),
            pgbouncer_auth_file: "/etc/pgbouncer/userlist.txt".into(),
            pgbouncer_unix_socket_dir: "/var/run/postgresql".into(),
            pgbouncer_logfile: "/var/log/postgresql/pgbouncer.log".into(),
            pgbouncer_pidfile: "/var/run/postgresql/pgbouncer.pid".into(),
            db_tls_mode: "verify-full".into(),
            db_tls_ca_file: "/etc/pgbouncer/rds-ca.pem".into(),
            db_port: POSTGRES_PORT,
            srv: None,
            etc: None,
        }
    }

    pub fn srv(&self, env: &Environment) -> String {
        self.srv.clone().unwrap_or_else(|| format!("/srv/{}", env.project))
    }

    pub fn etc(&self, env: &Environment) -> String {
        self.etc.clone().unwrap_or_else(|| format!("/etc/{}", env.project))
    }

    pub fn env_file(&self, env: &Environment) -> String {
        format!("{}/app.env", self.etc(env))
    }

    /// The RabbitMQ definitions (the application user) `fabrs-setup-cache` imports.
    pub fn queue_definitions(&self, env: &Environment) -> String {
        format!("{}/rabbitmq-user.json", self.etc(env))
    }

    /// While this file exists nginx serves the maintenance page (and still
    /// answers the load balancer's health check).
    pub fn maintenance_flag(&self, env: &Environment) -> String {
        format!("{}/maintenance.on", self.srv(env))
    }
}

/// Where a secret's text comes from in a render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SecretSrc {
    /// No secret (e.g. a cache without a password): the empty string.
    None,
    /// The value itself, or its placeholder.
    Text(String),
    /// A token per encoding for the boot-time fetch (`SecretMode::Fetched`);
    /// the value is kept only to check that each format can hold it.
    Token { name: String, value: String },
}

impl SecretSrc {
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, SecretSrc::None)
    }
    /// The text to quote for the encoding `enc` (`url`, `redis`,
    /// `userlist`, `json`): the value, or the token standing for its
    /// encoding (which every encoder leaves as it is).
    pub(crate) fn form(&self, enc: &str) -> String {
        match self {
            SecretSrc::None => String::new(),
            SecretSrc::Text(t) => t.clone(),
            SecretSrc::Token { name, .. } => token(name, enc),
        }
    }
    /// What the format checks run on: the value wherever it is known.
    pub(crate) fn checked(&self) -> &str {
        match self {
            SecretSrc::None => "",
            SecretSrc::Text(t) => t,
            SecretSrc::Token { value, .. } => value,
        }
    }
}

pub(crate) fn secret_text(mode: SecretMode<'_>, name: Option<&str>) -> Result<SecretSrc, RenderError> {
    let Some(name) = name else {
        return Ok(SecretSrc::None);
    };
    let value = |secrets: &fabrs_config::secrets::Secrets| {
        secrets
            .get(name)
            .map(|v| v.expose().to_string())
            .ok_or_else(|| RenderError::MissingSecret(name.to_string()))
    };
    match mode {
        SecretMode::Placeholders => Ok(SecretSrc::Text(placeholder(name))),
        SecretMode::Values(secrets) => Ok(SecretSrc::Text(value(secrets)?)),
        SecretMode::Fetched(secrets) => Ok(SecretSrc::Token {
            name: name.to_string(),
            value: value(secrets)?,
        }),
    }
}

/// A secret as the formats that carry it need it. The raw value is not here:
/// a template can only write one of these encodings.
#[derive(Serialize)]
struct SecretCtx {
    /// Percent-encoded for a URL's userinfo.
    url: UrlPart,
    /// Quoted for Redis's configuration (`requirepass`).
    redis: RedisValue,
}

fn bad(what: &str, e: FormatError) -> RenderError {
    RenderError::Value {
        what: what.to_string(),
        message: e.message,
        hint: e.hint,
    }
}

fn word(what: &str, s: &str) -> Result<Word, RenderError> {
    Word::parse(s).map_err(|e| bad(what, e))
}

fn ini(what: &str, s: &str) -> Result<IniValue, RenderError> {
    IniValue::parse(s).map_err(|e| bad(what, e))
}

fn host(what: &str, s: &str) -> Result<Hostname, RenderError> {
    Hostname::parse(s).map_err(|e| bad(what, e))
}

fn secret(src: &SecretSrc) -> SecretCtx {
    SecretCtx {
        url: UrlPart::encode(&src.form("url")),
        redis: RedisValue::quote(&src.form("redis")),
    }
}

/// pgbouncer's auth file can hold the value (checked on the value itself
/// when the file gets a token).
fn userlist(what: &str, src: &SecretSrc) -> Result<UserlistValue, RenderError> {
    UserlistValue::quote(src.checked()).map_err(|e| bad(what, e))?;
    UserlistValue::quote(&src.form("userlist")).map_err(|e| bad(what, e))
}

/// What templates see: every string is a type of `fabrs_config::formats`
/// (validated for, or quoted for, the format it goes into), a number or a bool.
pub(crate) fn build(env: &Environment, role: RoleKind, opts: &Options<'_>) -> Result<tera::Context, RenderError> {
    let l = &opts.layout;
    let srv = l.srv(env);
    let current = format!("{srv}/current");
    let cache_role = env.role(RoleKind::Cache);
    let (cache_engine, queue_engine) = cache_role
        .map(|r| (r.cache, r.queue))
        .unwrap_or((CacheEngine::None, QueueEngine::None));
    let cache_pw = secret_text(
        opts.secrets,
        cache_role.and_then(|r| r.cache_password_secret.as_deref()),
    )?;
    let queue_pw = secret_text(
        opts.secrets,
        cache_role.and_then(|r| r.queue_password_secret.as_deref()),
    )?;
    // A Redis queue shares the cache's password.
    let queue_pw = if queue_engine == QueueEngine::Redis && queue_pw.is_empty() {
        cache_pw.clone()
    } else {
        queue_pw
    };
    let db_pw = secret_text(opts.secrets, Some(&env.database.password_secret))?;
    let concurrency = env.role(RoleKind::Worker).map(|w| w.concurrency).unwrap_or(1);
    let app_env = env
        .app
        .env
        .iter()
        .map(|(k, v)| {
            Ok(json!({
                "key": word(&format!("app.env.{k}"), k)?,
                "value": SystemdEnvValue::quote(v).map_err(|e| bad(&format!("app.env.{k}"), e))?,
            }))
        })
        .collect::<Result<Vec<_>, RenderError>>()?;
    let server_names: Vec<NginxServerName> = if env.app.server_names.is_empty() {
        vec![NginxServerName::parse("_").expect("the catch-all name")]
    } else {
        env.app.server_names.clone()
    };
    let photos_bucket = env
        .app
        .photos_bucket
        .clone()
        .unwrap_or_else(|| format!("{}-{}-photos", env.project, env.name));
    let project = word("project", &env.project)?;
    let value = json!({
        "project": project,
        "environment": word("environment", &env.name)?,
        "region": word("region", &env.region)?,
        "role": role.as_str(),
        "revision": word("revision", &opts.revision)?,
        "app": {
            "name": word("app.name", &env.app.name)?,
            "port": env.app.port,
            "server_names": server_names,
            "user": project,
            "concurrency": concurrency,
            "photos_bucket": word("app.photos_bucket", &photos_bucket)?,
            "photos_prefix": fabrs_config::names::PHOTOS_PREFIX,
            "env": app_env,
        },
        "db": {
            "name": word("database.name", &env.database.name)?,
            "username": word("database.username", &env.database.username)?,
            "password": secret(&db_pw),
            "userlist": {
                "user": UserlistValue::quote(&env.database.username).map_err(|e| bad("database.username", e))?,
                "password": userlist(&format!("secret {}", env.database.password_secret), &db_pw)?,
            },
            "port": l.db_port,
            "master_host": host("database master address", &opts.facts.db_master_host)?,
            "replica_host": opts.facts.db_replica_host.as_deref().map(|h| host("database replica address", h)).transpose()?,
        },
        "cache": {
            "engine": match cache_engine { CacheEngine::Redis => "redis", CacheEngine::Memcached => "memcached", CacheEngine::None => "none" },
            "host": host("cache address", &opts.facts.cache_host)?,
            "port": cache_port(cache_engine).unwrap_or(0),
            "password": secret(&cache_pw),
        },
        "queue": {
            "engine": match queue_engine { QueueEngine::Rabbitmq => "rabbitmq", QueueEngine::Redis => "redis", QueueEngine::None => "none" },
            "host": host("cache address", &opts.facts.cache_host)?,
            "port": queue_port(queue_engine).unwrap_or(0),
            "username": project,
            "password": secret(&queue_pw),
            "definitions_file": word("queue definitions path", &l.queue_definitions(env))?,
        },
        "ssh": { "authorized_keys": env.ssh.authorized_keys.iter().map(|k| YamlScalar::quote(k)).collect::<Vec<_>>() },
        "artifacts": {
            "bucket": word("artifacts.bucket", &env.artifacts.bucket)?,
            "prefix": ShellWord::quote(&env.artifacts.prefix).map_err(|e| bad("artifacts.prefix", e))?,
        },
        "paths": {
            "srv": word("srv path", &srv)?,
            "releases": word("releases path", &format!("{srv}/releases"))?,
            "current": word("current path", &current)?,
            "static_dir": word("static path", &format!("{current}/static"))?,
            "maintenance_flag": word("maintenance flag path", &l.maintenance_flag(env))?,
            "etc": word("etc path", &l.etc(env))?,
            "env_file": word("environment file path", &l.env_file(env))?,
        },
        "nginx": {
            "user": word("nginx user", &l.nginx_user)?,
            "pid": word("nginx pid", &l.nginx_pid)?,
            "error_log": word("nginx error_log", &l.nginx_error_log)?,
            "access_log": word("nginx access_log", &l.nginx_access_log)?,
            "mime_types": word("nginx mime_types", &l.nginx_mime_types)?,
            "temp_dir": l.nginx_temp_dir.as_deref().map(|d| word("nginx temp dir", d)).transpose()?,
            "tls_certificate": word("nginx certificate", &l.tls_certificate)?,
            "tls_key": word("nginx key", &l.tls_key)?,
            "http_port": l.http_port,
            "https_port": l.https_port,
            "keepalive_timeout": env.load_balancer.idle_timeout.as_secs().saturating_add(15),
            // Port 80 redirects to HTTPS where the load balancer has an
            // HTTPS (or SSL) listener…
            "https_redirect": env
                .load_balancer
                .listeners
                .iter()
                .any(|l| matches!(l.protocol, fabrs_config::Protocol::Https | fabrs_config::Protocol::Ssl)),
            // …except the health check, when the ELB checks over plain HTTP on 80.
            "healthcheck_on_http": env.load_balancer.health_check.protocol == fabrs_config::Protocol::Http
                && env.load_balancer.health_check.port == 80,
            "client_max_body_size": "12m",
        },
        "pgbouncer": {
            "port": l.pgbouncer_port,
            "auth_file": ini("pgbouncer auth_file", &l.pgbouncer_auth_file)?,
            "unix_socket_dir": ini("pgbouncer unix_socket_dir", &l.pgbouncer_unix_socket_dir)?,
            "logfile": ini("pgbouncer logfile", &l.pgbouncer_logfile)?,
            "pidfile": ini("pgbouncer pidfile", &l.pgbouncer_pidfile)?,
            "server_tls_sslmode": ini("pgbouncer server_tls_sslmode", &l.db_tls_mode)?,
            // Also a cloud-init runcmd argument: a word.
            "server_tls_ca_file": word("pgbouncer server_tls_ca_file", &l.db_tls_ca_file)?,
        },
    });
    tera::Context::from_serialize(&value).map_err(|e| RenderError::Template {
        name: "(context)".into(),
        origin: String::new(),
        message: e.to_string(),
    })
}
