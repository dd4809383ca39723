//! `fabrs render ENV [--role ROLE] [--out DIR]`

use std::path::Path;

use anyhow::{Context, bail};
use fabrs_config::RoleKind;
use fabrs_render::{Options, Renderer, SecretMode};

use crate::Outcome;
use crate::args::{GlobalArgs, OutputFormat, RenderArgs};
use crate::printer::Printer;

pub fn run(global: &GlobalArgs, args: &RenderArgs, printer: &mut Printer) -> anyhow::Result<Outcome> {
    let Some(env) = super::load(&args.env, &global.dir, printer) else {
        return Ok(Outcome::Failed);
    };
    let roles: Vec<RoleKind> = match &args.role {
        Some(r) => {
            let Some(kind) = RoleKind::parse(r) else {
                bail!("unknown role `{r}` (roles: web, worker, cache)");
            };
            if !env.roles.contains_key(&kind) {
                bail!("{} has no `{r}` role", env.file.display());
            }
            vec![kind]
        }
        None => env.roles.keys().copied().collect(),
    };
    let secrets;
    let mut opts = Options::review(&env, &args.revision);
    if args.resolve_secrets {
        if args.out.is_none() {
            bail!("--resolve-secrets writes secret values to files: it needs --out DIR");
        }
        match fabrs_config::secrets::resolve(&env, |k| std::env::var(k).ok()) {
            Ok(s) => secrets = s,
            Err(d) => {
                super::report(&d, printer);
                return Ok(Outcome::Failed);
            }
        }
        opts.secrets = SecretMode::Values(&secrets);
    }
    let renderer = Renderer::new(&env.project_dir)?;
    let mut listing = Vec::new();
    for role in roles {
        let rendered = renderer.render_role(&env, role, &opts)?;
        let mut items: Vec<(String, String, bool)> = rendered
            .files
            .iter()
            .map(|(name, f)| (name.clone(), f.content.clone(), f.sensitive))
            .collect();
        items.push(("user-data.yaml".into(), rendered.user_data.clone(), true));
        for (name, content, sensitive) in items {
            let rel = Path::new(role.as_str()).join(&name);
            if let Some(out) = &args.out {
                let path = out.join(&rel);
                write(&path, &content, sensitive && args.resolve_secrets)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            listing.push((rel, content));
        }
    }
    match (&args.out, printer.format) {
        (_, OutputFormat::Json) => {
            let files: Vec<serde_json::Value> = listing
                .iter()
                .map(|(p, c)| serde_json::json!({ "path": p, "bytes": c.len(), "content": if args.resolve_secrets { None } else { Some(c) } }))
                .collect();
            printer.json(&serde_json::json!({ "environment": env.name, "revision": args.revision, "files": files }));
        }
        (Some(out), OutputFormat::Human) => {
            for (p, _) in &listing {
                printer.data(&out.join(p).display().to_string());
            }
            let note = if args.resolve_secrets {
                "secret values filled in; the files are mode 0600"
            } else {
                "secrets shown as __secret_<name>__ placeholders"
            };
            printer.success(&format!(
                "rendered {} files for {} / {} ({note})",
                listing.len(),
                env.project,
                env.name
            ));
        }
        (None, OutputFormat::Human) => {
            for (p, c) in &listing {
                printer.data(&format!("==> {} <==\n{}", p.display(), c));
            }
        }
    }
    Ok(Outcome::Ok)
}

fn write(path: &Path, content: &str, secret: bool) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)?;
    f.write_all(content.as_bytes())
}
