//! The values templates see.

use fabrs_config::network::{POSTGRES_PORT, cache_port, queue_port};
use fabrs_config::{CacheEngine, Environment, QueueEngine, RoleKind};
use serde_json::json;

use crate::{Options, RenderError, SecretMode, placeholder};

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

    /// While this file exists nginx serves the maintenance page (and still
    /// answers the load balancer's health check).
    pub fn maintenance_flag(&self, env: &Environment) -> String {
        format!("{}/maintenance.on", self.srv(env))
    }
}

pub(crate) fn secret_text(mode: SecretMode<'_>, name: Option<&str>) -> Result<String, RenderError> {
    let Some(name) = name else {
        return Ok(String::new());
    };
    match mode {
        SecretMode::Placeholders => Ok(placeholder(name)),
        SecretMode::Values(secrets) => secrets
            .get(name)
            .map(|v| v.expose().to_string())
            .ok_or_else(|| RenderError::MissingSecret(name.to_string())),
    }
}

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
    let concurrency = env.role(RoleKind::Worker).map(|w| w.concurrency).unwrap_or(1);
    let app_env: Vec<(&String, &String)> = env.app.env.iter().collect();
    let value = json!({
        "project": env.project,
        "environment": env.name,
        "region": env.region,
        "role": role.as_str(),
        "revision": opts.revision,
        "app": {
            "name": env.app.name,
            "port": env.app.port,
            "server_names": if env.app.server_names.is_empty() { vec!["_".to_string()] } else { env.app.server_names.clone() },
            "user": env.project,
            "concurrency": concurrency,
            "photos_bucket": env.app.photos_bucket.clone().unwrap_or_else(|| format!("{}-{}-photos", env.project, env.name)),
            "env": app_env,
        },
        "db": {
            "name": env.database.name,
            "username": env.database.username,
            "password": secret_text(opts.secrets, Some(&env.database.password_secret))?,
            "port": l.db_port,
            "master_host": opts.facts.db_master_host,
            "replica_host": opts.facts.db_replica_host,
        },
        "cache": {
            "engine": match cache_engine { CacheEngine::Redis => "redis", CacheEngine::Memcached => "memcached", CacheEngine::None => "none" },
            "host": opts.facts.cache_host,
            "port": cache_port(cache_engine).unwrap_or(0),
            "password": cache_pw,
        },
        "queue": {
            "engine": match queue_engine { QueueEngine::Rabbitmq => "rabbitmq", QueueEngine::Redis => "redis", QueueEngine::None => "none" },
            "host": opts.facts.cache_host,
            "port": queue_port(queue_engine).unwrap_or(0),
            "username": env.project,
            "password": queue_pw,
        },
        "ssh": { "authorized_keys": env.ssh.authorized_keys },
        "artifacts": { "bucket": env.artifacts.bucket, "prefix": env.artifacts.prefix },
        "paths": {
            "srv": srv,
            "releases": format!("{srv}/releases"),
            "current": current,
            "static_dir": format!("{current}/static"),
            "maintenance_flag": l.maintenance_flag(env),
            "etc": l.etc(env),
            "env_file": l.env_file(env),
        },
        "nginx": {
            "user": l.nginx_user,
            "pid": l.nginx_pid,
            "error_log": l.nginx_error_log,
            "access_log": l.nginx_access_log,
            "mime_types": l.nginx_mime_types,
            "temp_dir": l.nginx_temp_dir,
            "tls_certificate": l.tls_certificate,
            "tls_key": l.tls_key,
            "http_port": l.http_port,
            "https_port": l.https_port,
            "keepalive_timeout": env.load_balancer.idle_timeout.as_secs() + 15,
            "client_max_body_size": "12m",
        },
        "pgbouncer": {
            "port": l.pgbouncer_port,
            "auth_file": l.pgbouncer_auth_file,
            "unix_socket_dir": l.pgbouncer_unix_socket_dir,
            "logfile": l.pgbouncer_logfile,
            "pidfile": l.pgbouncer_pidfile,
            "server_tls_sslmode": l.db_tls_mode,
            "server_tls_ca_file": l.db_tls_ca_file,
        },
    });
    tera::Context::from_serialize(&value).map_err(|e| RenderError::Template {
        name: "(context)".into(),
        origin: String::new(),
        message: e.to_string(),
    })
}
