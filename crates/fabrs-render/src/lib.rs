//! fabrs-render: environment model → the files a server is built from.
//!
//! Templates are tera files shipped in the repository's `templates/` and
//! `cloud-init/` folders (embedded in the binary) and overridable, file by file,
//! by a project's own `templates/` and `cloud-init/` folders. Per role, the
//! service configs are rendered first, then embedded as `write_files` into the
//! role's `#cloud-config` user-data. Nothing here knows AWS.

mod context;
mod filters;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fabrs_config::formats::{RabbitDefinitions, Word, YamlFileContent, YamlScalar};
use fabrs_config::secrets::Secrets;
use fabrs_config::{Environment, RoleKind};

pub use context::{Facts, Layout};

/// Shipped defaults: (name, folder, content).
const DEFAULTS: &[(&str, &str, &str)] = &[
    (
        "nginx.conf.tera",
        "templates",
        include_str!("../../../templates/nginx.conf.tera"),
    ),
    (
        "pgbouncer.ini.tera",
        "templates",
        include_str!("../../../templates/pgbouncer.ini.tera"),
    ),
    (
        "pgbouncer-userlist.txt.tera",
        "templates",
        include_str!("../../../templates/pgbouncer-userlist.txt.tera"),
    ),
    (
        "fetch-secrets.py.tera",
        "templates",
        include_str!("../../../templates/fetch-secrets.py.tera"),
    ),
    (
        "pgbouncer-rds-ca.conf.tera",
        "templates",
        include_str!("../../../templates/pgbouncer-rds-ca.conf.tera"),
    ),
    (
        "app.env.tera",
        "templates",
        include_str!("../../../templates/app.env.tera"),
    ),
    (
        "app.service.tera",
        "templates",
        include_str!("../../../templates/app.service.tera"),
    ),
    (
        "install-release.sh.tera",
        "templates",
        include_str!("../../../templates/install-release.sh.tera"),
    ),
    (
        "redis.conf.tera",
        "templates",
        include_str!("../../../templates/redis.conf.tera"),
    ),
    (
        "memcached.conf.tera",
        "templates",
        include_str!("../../../templates/memcached.conf.tera"),
    ),
    (
        "rabbitmq.conf.tera",
        "templates",
        include_str!("../../../templates/rabbitmq.conf.tera"),
    ),
    (
        "setup-cache.sh.tera",
        "templates",
        include_str!("../../../templates/setup-cache.sh.tera"),
    ),
    (
        "web.yaml.tera",
        "cloud-init",
        include_str!("../../../cloud-init/web.yaml.tera"),
    ),
    (
        "worker.yaml.tera",
        "cloud-init",
        include_str!("../../../cloud-init/worker.yaml.tera"),
    ),
    (
        "cache.yaml.tera",
        "cloud-init",
        include_str!("../../../cloud-init/cache.yaml.tera"),
    ),
    (
        "common-head.yaml.tera",
        "cloud-init",
        include_str!("../../../cloud-init/common-head.yaml.tera"),
    ),
    (
        "common-files.yaml.tera",
        "cloud-init",
        include_str!("../../../cloud-init/common-files.yaml.tera"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template {name} ({origin}): {message}")]
    Template {
        name: String,
        origin: String,
        message: String,
    },
    #[error("cannot read template override {path}: {message}")]
    Override { path: PathBuf, message: String },
    #[error("secret `{0}` is declared but was not resolved")]
    MissingSecret(String),
    /// A value cannot be written in the format of the file it goes into.
    #[error("{what}: {message} ({hint})")]
    Value {
        what: String,
        message: String,
        hint: String,
    },
}

/// How secrets appear in rendered files.
#[derive(Clone, Copy, Debug)]
pub enum SecretMode<'a> {
    /// `__secret_<name>__`: safe to print, to commit, to diff.
    Placeholders,
    /// The real values: such files are written with restrictive modes and never printed.
    Values(&'a Secrets),
    /// For user-data: a token per secret and encoding (`token`), which
    /// `/usr/local/sbin/fabrs-fetch-secrets` replaces at boot with the value
    /// read from SSM Parameter Store, encoded as the token says. The values
    /// are given only to check that each format can hold them; none is
    /// written.
    Fetched(&'a Secrets),
}

pub fn placeholder(name: &str) -> String {
    format!("__secret_{name}__")
}

/// Where the boot-time secret fetch is installed on every server.
pub const FETCH_SECRETS: &str = "/usr/local/sbin/fabrs-fetch-secrets";

/// The token standing for secret `name` encoded as `enc` (`url`: a URL's
/// userinfo, percent-encoded; `redis`: inside Redis's double quotes;
/// `userlist`: inside pgbouncer's double quotes; `json`: inside a JSON
/// string). Letters, digits, `-`, `.` and `_` only (secret names are
/// `[a-z][a-z0-9_]*`), so every encoder leaves it as it is, and the final
/// `.` ends it; `fabrs-fetch-secrets` matches exactly this shape.
pub fn token(name: &str, enc: &str) -> String {
    format!("fabrs-ssm.{enc}.{name}.")
}

/// One rendered file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Where it goes on the server (absolute) — or, for user-data, `user-data`.
    pub target: String,
    pub content: String,
    pub owner: String,
    pub mode: String,
    /// Holds a secret (or its placeholder).
    pub sensitive: bool,
    /// Write it after packages are installed (its owner is a package's user).
    pub defer: bool,
}

/// Everything rendered for one role: its service files, and the user-data that embeds them.
#[derive(Clone, Debug)]
pub struct RoleFiles {
    pub role: RoleKind,
    /// Keyed by a short review name, e.g. `nginx.conf`, `pgbouncer.ini`.
    pub files: BTreeMap<String, File>,
    pub user_data: String,
}

pub struct Renderer {
    tera: tera::Tera,
    origins: BTreeMap<String, String>,
}

impl Renderer {
    /// Shipped defaults, each replaced by `<project_dir>/<folder>/<name>` when that file exists.
    pub fn new(project_dir: &Path) -> Result<Renderer, RenderError> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(Vec::<&'static str>::new());
        filters::register(&mut tera);
        let mut origins = BTreeMap::new();
        let mut sources = Vec::new();
        for (name, folder, default) in DEFAULTS {
            let path = project_dir.join(folder).join(name);
            let (content, origin) = match std::fs::read_to_string(&path) {
                Ok(c) => (c, path.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (default.to_string(), format!("built-in {folder}/{name}"))
                }
                Err(e) => {
                    return Err(RenderError::Override {
                        path,
                        message: e.to_string(),
                    });
                }
            };
            origins.insert(name.to_string(), origin);
            sources.push((name.to_string(), content));
        }
        tera.add_raw_templates(sources.iter().map(|(n, c)| (n.as_str(), c.as_str())))
            .map_err(|e| RenderError::Template {
                name: "(templates)".into(),
                origin: "loading".into(),
                message: error_chain(&e),
            })?;
        Ok(Renderer { tera, origins })
    }

    fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, RenderError> {
        self.tera.render(name, ctx).map_err(|e| RenderError::Template {
            name: name.to_string(),
            origin: self.origins.get(name).cloned().unwrap_or_default(),
            message: error_chain(&e),
        })
    }

    /// Render every role of the environment.
    pub fn render_all(&self, env: &Environment, opts: &Options<'_>) -> Result<Vec<RoleFiles>, RenderError> {
        env.roles.keys().map(|r| self.render_role(env, *r, opts)).collect()
    }

    pub fn render_role(&self, env: &Environment, role: RoleKind, opts: &Options<'_>) -> Result<RoleFiles, RenderError> {
        let base = context::build(env, role, opts)?;
        let mut files = BTreeMap::new();
        let layout = &opts.layout;
        let svc = |f: &mut BTreeMap<String, File>,
                   key: &str,
                   target: String,
                   content: String,
                   owner: &str,
                   mode: &str,
                   sensitive: bool,
                   defer: bool| {
            f.insert(
                key.to_string(),
                File {
                    target,
                    content,
                    owner: owner.into(),
                    mode: mode.into(),
                    sensitive,
                    defer,
                },
            );
        };
        let app_user = format!("root:{}", env.project);
        match role {
            RoleKind::Web | RoleKind::Worker => {
                if role == RoleKind::Web {
                    svc(
                        &mut files,
                        "nginx.conf",
                        "/etc/nginx/nginx.conf".into(),
                        self.render("nginx.conf.tera", &base)?,
                        "root:root",
                        "0644",
                        false,
                        true,
                    );
                }
                svc(
                    &mut files,
                    "pgbouncer.ini",
                    layout.pgbouncer_ini.clone(),
                    self.render("pgbouncer.ini.tera", &base)?,
                    "postgres:postgres",
                    "0640",
                    false,
                    true,
                );
                svc(
                    &mut files,
                    "pgbouncer-userlist.txt",
                    layout.pgbouncer_auth_file.clone(),
                    self.render("pgbouncer-userlist.txt.tera", &base)?,
                    "postgres:postgres",
                    "0600",
                    true,
                    true,
                );
                svc(
                    &mut files,
                    "pgbouncer-rds-ca.conf",
                    "/etc/systemd/system/pgbouncer.service.d/fabrs-rds-ca.conf".into(),
                    self.render("pgbouncer-rds-ca.conf.tera", &base)?,
                    "root:root",
                    "0644",
                    false,
                    // After the packages: pgbouncer's install starts it before the bundle is there.
                    true,
                );
                svc(
                    &mut files,
                    "app.env",
                    layout.env_file(env),
                    self.render("app.env.tera", &base)?,
                    &app_user,
                    "0640",
                    true,
                    true,
                );
                let process = if role == RoleKind::Web { "web" } else { "worker" };
                let mut ctx = base.clone();
                ctx.insert("process", process);
                svc(
                    &mut files,
                    &format!("{}-{process}.service", env.app.name),
                    format!("/etc/systemd/system/{}-{process}.service", env.app.name),
                    self.render("app.service.tera", &ctx)?,
                    "root:root",
                    "0644",
                    false,
                    false,
                );
                svc(
                    &mut files,
                    "fabrs-install-release",
                    "/usr/local/sbin/fabrs-install-release".into(),
                    self.render("install-release.sh.tera", &base)?,
                    "root:root",
                    "0755",
                    false,
                    false,
                );
            }
            RoleKind::Cache => {
                let r = env.role(RoleKind::Cache).expect("rendering a role the environment has");
                use fabrs_config::{CacheEngine, QueueEngine};
                if r.cache == CacheEngine::Redis || r.queue == QueueEngine::Redis {
                    svc(
                        &mut files,
                        "redis.conf",
                        "/etc/redis/redis.conf".into(),
                        self.render("redis.conf.tera", &base)?,
                        "redis:redis",
                        "0640",
                        true,
                        true,
                    );
                }
                if r.cache == CacheEngine::Memcached {
                    svc(
                        &mut files,
                        "memcached.conf",
                        "/etc/memcached.conf".into(),
                        self.render("memcached.conf.tera", &base)?,
                        "root:root",
                        "0644",
                        false,
                        true,
                    );
                }
                if r.queue == QueueEngine::Rabbitmq {
                    svc(
                        &mut files,
                        "rabbitmq.conf",
                        "/etc/rabbitmq/rabbitmq.conf".into(),
                        self.render("rabbitmq.conf.tera", &base)?,
                        "rabbitmq:rabbitmq",
                        "0644",
                        false,
                        true,
                    );
                    // The application user, imported by fabrs-setup-cache; read by
                    // rabbitmqctl as the rabbitmq user.
                    let pw = context::secret_text(opts.secrets, r.queue_password_secret.as_deref())?;
                    let refused = |e: fabrs_config::formats::FormatError| RenderError::Value {
                        what: format!("secret {}", r.queue_password_secret.as_deref().unwrap_or("")),
                        message: e.message,
                        hint: e.hint,
                    };
                    RabbitDefinitions::user(&env.project, pw.checked()).map_err(refused)?;
                    let defs = RabbitDefinitions::user(&env.project, &pw.form("json")).map_err(refused)?;
                    svc(
                        &mut files,
                        "rabbitmq-user.json",
                        layout.queue_definitions(env),
                        defs.as_str().to_string(),
                        "rabbitmq:rabbitmq",
                        "0400",
                        true,
                        true,
                    );
                }
                svc(
                    &mut files,
                    "fabrs-setup-cache",
                    "/usr/local/sbin/fabrs-setup-cache".into(),
                    self.render("setup-cache.sh.tera", &base)?,
                    "root:root",
                    "0755",
                    false,
                    false,
                );
            }
        }
        // The boot-time fetch of the secrets into the files holding them
        // (tokens there in user-data; it changes nothing in files without).
        let mut ctx = base.clone();
        let secret_files: Vec<Word> = files
            .values()
            .filter(|f| f.sensitive)
            .map(|f| {
                Word::parse(&f.target).map_err(|e| RenderError::Value {
                    what: format!("path {}", f.target),
                    message: e.message,
                    hint: e.hint,
                })
            })
            .collect::<Result<_, _>>()?;
        ctx.insert("secret_files", &secret_files);
        ctx.insert(
            "ssm_path",
            &Word::parse(&fabrs_config::names::ssm_path(&env.project, &env.name)).map_err(|e| RenderError::Value {
                what: "SSM path".into(),
                message: e.message,
                hint: e.hint,
            })?,
        );
        svc(
            &mut files,
            "fabrs-fetch-secrets",
            FETCH_SECRETS.into(),
            self.render("fetch-secrets.py.tera", &ctx)?,
            "root:root",
            "0755",
            false,
            false,
        );
        // write_files entries: every field quoted for YAML; the content a literal
        // block (keys of an entry sit at column 4) or base64, read back exactly.
        let embedded: Vec<serde_json::Value> = files
            .values()
            .map(|f| {
                let c = YamlFileContent::embed(&f.content, 4);
                serde_json::json!({
                    "path": YamlScalar::quote(&f.target),
                    "owner": YamlScalar::quote(&f.owner),
                    "mode": YamlScalar::quote(&f.mode),
                    "defer": f.defer,
                    "content": c.content,
                    "encoding": c.encoding,
                })
            })
            .collect();
        let mut ctx = base;
        ctx.insert("files", &embedded);
        let user_data = self.render(&format!("{}.yaml.tera", role.as_str()), &ctx)?;
        Ok(RoleFiles { role, files, user_data })
    }
}

/// What a render needs beyond the environment.
#[derive(Clone, Debug)]
pub struct Options<'a> {
    pub revision: String,
    pub secrets: SecretMode<'a>,
    /// Addresses only known once resources exist (placeholders otherwise).
    pub facts: Facts,
    /// Ports and paths on the server (production defaults; tests adapt them).
    pub layout: Layout,
}

impl Options<'_> {
    pub fn review(env: &Environment, revision: &str) -> Options<'static> {
        Options {
            revision: revision.to_string(),
            secrets: SecretMode::Placeholders,
            facts: Facts::placeholders(env),
            layout: Layout::production(),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut src = e.source();
    while let Some(s) = src {
        parts.push(s.to_string());
        src = s.source();
    }
    parts.join(": ")
}
