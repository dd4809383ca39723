//! The web process (behind nginx).
//!
//! Upload ordering (POST /photos), chosen so that a failure at any step
//! leaves nothing half-made that matters:
//!   1. read the body (bounded) and decode the image header: on rejection
//!      nothing at all has been stored;
//!   2. PUT the original to S3 (failure: nothing else exists; 503);
//!   3. INSERT the row as 'pending' and commit (failure: the S3 object is
//!      deleted best-effort; 503);
//!   4. publish the render job with publisher confirms (failure: the row
//!      and the object are deleted; 503).
//!
//! The row is committed BEFORE the job is published, so a worker never sees
//! a job whose row is not yet visible. If the process dies between 3 and 4
//! the row stays 'pending' with no job: the worker's sweeper re-enqueues
//! pending rows whose `enqueued_at` is older than REFAPP_REQUEUE_AFTER_SECS
//! (rendering is idempotent, so a duplicate job is harmless). The only
//! possible leftover of a crash is an orphan original in S3 with no row
//! (crash between 2 and 3): unreferenced and harmless (a bucket lifecycle
//! rule can expire such objects).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use uuid::Uuid;

use crate::cache::{Cache, Stamp};
use crate::config::Config;
use crate::db::{self, PhotoRow, Pool};
use crate::imaging::{self, ProbeError};
use crate::queue::{Publisher, RenderJob};
use crate::storage::Storage;

pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long Redis keeps the shared copy of the index page. Not what keeps it
/// fresh: every copy is checked against the page's version on each request
/// (cache.rs).
pub const INDEX_TTL_SECS: u64 = 600;
pub const INDEX_LIMIT: i64 = 48;
const X_REFAPP_REVISION: HeaderName = HeaderName::from_static("x-refapp-revision");
const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
/// Room for the multipart framing around the file itself.
const MULTIPART_OVERHEAD: usize = 64 * 1024;

pub struct AppState {
    pub cfg: Config,
    pub db: Pool,
    pub replica: Pool,
    pub cache: Cache,
    /// This server's copy of the index page (validated per request).
    pub page: LocalPage,
    pub publisher: Publisher,
    pub storage: Storage,
}

pub async fn state(cfg: Config) -> Result<Arc<AppState>> {
    let db = Pool::new(&cfg.database_url, 16, cfg.secrets.clone())?;
    let replica = match &cfg.database_replica_url {
        Some(u) if *u != cfg.database_url => Pool::new(u, 16, cfg.secrets.clone())?,
        _ => db.clone(),
    };
    Ok(Arc::new(AppState {
        db,
        replica,
        cache: Cache::new(cfg.clone()),
        page: LocalPage::default(),
        publisher: Publisher::new(cfg.clone()),
        storage: Storage::new(&cfg).await,
        cfg,
    }))
}

pub fn router(st: Arc<AppState>) -> Router {
    let revision = HeaderValue::from_str(&st.cfg.revision).unwrap_or(HeaderValue::from_static("invalid"));
    Router::new()
        .route("/", get(index))
        .route("/healthcheck.html", get(healthcheck))
        .route("/photos", post(upload))
        .route("/photos/{id}", get(photo))
        .nest_service("/static", ServeDir::new(&st.cfg.static_dir))
        .layer(SetResponseHeaderLayer::overriding(X_REFAPP_REVISION, revision))
        .with_state(st)
}

pub async fn serve(
    cfg: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let st = state(cfg).await?;
    tracing::info!(addr = %listener.local_addr()?, "web listening");
    axum::serve(listener, router(st))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn json_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into(), "code": code}))).into_response()
}

async fn check<F: Future<Output = Result<()>>>(f: F) -> Result<(), String> {
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// The load balancer's check, and through it the group's: 503 only for what
/// this server cannot serve without (the database, through its local
/// pgbouncer). The cache and the queue are shared by every web server: their
/// outage degrades pages (the index bypasses the cache; uploads wait) but
/// answers 200 `degraded`, so losing the one cache server does not make the
/// group replace the whole web tier.
async fn healthcheck(State(st): State<Arc<AppState>>) -> Response {
    let (d, c, q) = tokio::join!(
        check(db::ping(&st.db)),
        check(st.cache.ping()),
        check(st.publisher.ping()),
    );
    let scrub = |name: &'static str, r: Result<(), String>| r.err().map(|e| (name, st.cfg.secrets.scrub(&e)));
    let degraded: Vec<(&str, String)> = [scrub("cache", c), scrub("queue", q)].into_iter().flatten().collect();
    let failed: Vec<(&str, String)> = scrub("database", d).into_iter().collect();
    let rev = esc(&st.cfg.revision);
    if failed.is_empty() {
        for (name, e) in &degraded {
            tracing::warn!(dependency = name, error = %e, "healthcheck: degraded");
        }
        let state = if degraded.is_empty() {
            "ok".to_string()
        } else {
            let names: Vec<&str> = degraded.iter().map(|(n, _)| *n).collect();
            format!("ok (degraded: {})", names.join(", "))
        };
        let details: String = degraded
            .iter()
            .map(|(n, e)| format!("<li>{n}: {}</li>", esc(e)))
            .collect();
        let details = if details.is_empty() {
            details
        } else {
            format!("<ul>{details}</ul>")
        };
        return (
            [(header::CACHE_CONTROL, "no-store")],
            Html(format!(
                "<!doctype html><title>ok</title><p>{state}</p>{details}<p>revision: {rev}</p>\n"
            )),
        )
            .into_response();
    }
    let names: Vec<&str> = failed.iter().map(|(n, _)| *n).collect();
    for (name, e) in &failed {
        tracing::warn!(dependency = name, error = %e, "healthcheck failed");
    }
    let details: String = failed
        .iter()
        .map(|(n, e)| format!("<li>{n}: {}</li>", esc(e)))
        .collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CACHE_CONTROL, "no-store")],
        Html(format!(
            "<!doctype html><title>unavailable</title><p>unavailable: {}</p><ul>{details}</ul><p>revision: {rev}</p>\n",
            names.join(", ")
        )),
    )
        .into_response()
}

/// Read at most `limit` bytes of body; `Err(413 response)` beyond.
async fn read_limited(body: Body, limit: usize) -> Result<Vec<u8>, Response> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_body", format!("reading body: {e}")))?;
        if buf.len() + chunk.len() > limit {
            drain(stream, DRAIN_CAP).await;
            return Err(too_large(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// How much of a rejected body is read and discarded before answering.
const DRAIN_CAP: usize = 32 << 20;

/// Read and discard up to `cap` bytes of a rejected body, so a client still
/// sending it can finish and read the 413 (answering at once and closing
/// makes its write fail with a broken pipe). Beyond `cap`, the connection is
/// closed anyway. Behind nginx this never matters: nginx buffers bodies.
async fn drain<S, E>(mut stream: S, cap: usize)
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
{
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen < cap {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => seen += chunk.len(),
            _ => break,
        }
    }
}

fn too_large(limit: usize) -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("upload exceeds {limit} bytes"),
    )
}

/// The image bytes of the request: the raw body, or the first file field
/// (preferably named `photo` or `file`) of a multipart/form-data body.
async fn upload_bytes(st: &AppState, req: Request) -> Result<Vec<u8>, Response> {
    let max = st.cfg.max_upload_bytes;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    let limit = if is_multipart { max + MULTIPART_OVERHEAD } else { max };
    if let Some(len) = content_length(req.headers())
        && len > limit as u64
    {
        drain(req.into_body().into_data_stream(), DRAIN_CAP).await;
        return Err(too_large(max));
    }
    let (parts, body) = req.into_parts();
    let raw = read_limited(body, limit).await.map_err(|_| too_large(max))?;
    let data = if is_multipart {
        let req = Request::from_parts(parts, Body::from(raw));
        let mut mp = Multipart::from_request(req, &())
            .await
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text()))?;
        let mut found: Option<Vec<u8>> = None;
        while let Some(field) = mp
            .next_field()
            .await
            .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text()))?
        {
            let preferred = matches!(field.name(), Some("photo" | "file"));
            let is_file = field.file_name().is_some();
            if !(preferred || is_file) {
                continue;
            }
            let bytes = field
                .bytes()
                .await
                .map_err(|e| json_error(StatusCode::BAD_REQUEST, "bad_multipart", e.body_text()))?;
            found = Some(bytes.to_vec());
            break;
        }
        found.ok_or_else(|| {
            json_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "no_file",
                "multipart body has no file field (use `photo`)",
            )
        })?
    } else {
        raw
    };
    if data.len() > max {
        return Err(too_large(max));
    }
    if data.is_empty() {
        return Err(json_error(StatusCode::UNPROCESSABLE_ENTITY, "empty", "empty upload"));
    }
    Ok(data)
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

async fn upload(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let data = match upload_bytes(&st, req).await {
        Ok(d) => d,
        Err(resp) => return resp,
    };
    let probe = match imaging::probe(&data) {
        Ok(p) => p,
        Err(e @ ProbeError::Unsupported) => {
            return json_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_type", e.to_string());
        }
        Err(e) => {
            return json_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_image", e.to_string());
        }
    };
    let id = Uuid::new_v4();
    let key = format!("{}{}/original.{}", st.cfg.s3_prefix, id, probe.format.ext());
    let size = data.len();

    if let Err(e) = st.storage.put(&key, data, probe.format.content_type()).await {
        tracing::error!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "storing original failed");
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            "could not store the photo",
        );
    }
    let inserted = async {
        let c = st.db.get().await?;
        db::insert_photo(
            &c,
            id,
            &key,
            probe.format.content_type(),
            probe.width,
            probe.height,
            size,
        )
        .await
    }
    .await;
    if let Err(e) = inserted {
        tracing::error!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "inserting photo row failed");
        if let Err(e) = st.storage.delete(&key).await {
            tracing::warn!(error = %format!("{e:#}"), key, "could not delete orphan original");
        }
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "could not record the photo",
        );
    }
    let job = RenderJob {
        photo_id: id,
        key: key.clone(),
    };
    if let Err(e) = st.publisher.publish_job(&job).await {
        tracing::error!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "publishing render job failed");
        let undo = async {
            let c = st.db.get().await?;
            db::delete_photo(&c, id).await
        }
        .await;
        if let Err(e) = undo {
            // The row stays pending; the worker's sweeper will enqueue it.
            tracing::warn!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), %id, "could not delete row after failed publish");
        } else if let Err(e) = st.storage.delete(&key).await {
            tracing::warn!(error = %format!("{e:#}"), key, "could not delete orphan original");
        }
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "queue_unavailable",
            "could not queue the photo",
        );
    }
    tracing::info!(%id, bytes = size, "photo accepted");
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/photos/{id}"))],
        Json(json!({"id": id, "status": "pending"})),
    )
        .into_response()
}

pub fn photo_json(cfg: &Config, p: &PhotoRow) -> serde_json::Value {
    let renditions: Vec<serde_json::Value> = if p.status == "rendered" {
        p.renditions
            .iter()
            .map(|r| {
                json!({"size": r.size, "format": r.format, "width": r.width, "height": r.height,
                       "key": r.key, "url": cfg.rendition_url(&r.key)})
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut v = json!({
        "id": p.id,
        "status": p.status,
        "width": p.width,
        "height": p.height,
        "content_type": p.content_type,
        "created_at": p.created_at,
        "renditions": renditions,
    });
    if p.status == "failed" {
        v["error"] = json!(p.error.as_deref().unwrap_or("rendering failed"));
    }
    v
}

async fn photo(State(st): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<Uuid>() else {
        return json_error(StatusCode::NOT_FOUND, "not_found", "no such photo");
    };
    // The primary, not the replica: a client polls right after uploading.
    let res = async {
        let c = st.db.get().await?;
        db::get_photo(&c, id).await
    }
    .await;
    match res {
        Ok(Some(p)) => ([(header::CACHE_CONTROL, "no-store")], Json(photo_json(&st.cfg, &p))).into_response(),
        Ok(None) => json_error(StatusCode::NOT_FOUND, "not_found", "no such photo"),
        Err(e) => {
            tracing::error!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "reading photo failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "database unavailable",
            )
        }
    }
}

pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

pub fn render_index(cfg: &Config, photos: &[PhotoRow]) -> String {
    let mut items = String::new();
    for p in photos {
        let pick = |fmt: &str, size: u32| {
            p.renditions
                .iter()
                .find(|r| r.format == fmt && r.size == size)
                .map(|r| cfg.rendition_url(&r.key))
        };
        let id = p.id;
        match (p.status.as_str(), pick("jpg", 320)) {
            ("rendered", Some(jpg)) => {
                let webp = pick("webp", 320)
                    .map(|u| format!(r#"<source type="image/webp" srcset="{}">"#, esc(&u)))
                    .unwrap_or_default();
                let large = pick("jpg", 1024).unwrap_or_else(|| jpg.clone());
                items.push_str(&format!(
                    r#"<li class="photo" data-id="{id}"><a href="{}"><picture>{webp}<img src="{}" alt="photo {id}" loading="lazy"></picture></a></li>"#,
                    esc(&large),
                    esc(&jpg)
                ));
            }
            (status, _) => items.push_str(&format!(
                r#"<li class="photo {s}" data-id="{id}"><span>{s}</span></li>"#,
                s = esc(if status == "rendered" { "pending" } else { status })
            )),
        }
        items.push('\n');
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>refapp photos</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<header><img class="logo" src="/static/logo.svg" alt="refapp" width="40" height="40"><h1>Recent photos</h1></header>
<form method="post" action="/photos" enctype="multipart/form-data"><input type="file" name="photo" accept="image/jpeg,image/png,image/webp"> <button>Upload</button></form>
<ul class="photos">
{items}</ul>
<footer>revision {}</footer>
</body>
</html>
"#,
        esc(&cfg.revision)
    )
}

/// The page as this web server last built or fetched it, with the version
/// it is valid for (see cache.rs).
#[derive(Default)]
pub struct LocalPage {
    page: std::sync::Mutex<Option<(u64, Bytes)>>,
    /// One fill at a time: concurrent misses of one version wait for the
    /// first and take its page.
    fill: tokio::sync::Mutex<()>,
}

impl LocalPage {
    fn get(&self, version: u64) -> Option<Bytes> {
        let g = self.page.lock().unwrap_or_else(|e| e.into_inner());
        match &*g {
            Some((v, body)) if *v == version => Some(body.clone()),
            _ => None,
        }
    }
    fn put(&self, version: u64, body: Bytes) {
        *self.page.lock().unwrap_or_else(|e| e.into_inner()) = Some((version, body));
    }
}

/// A change being committed (cache.rs) normally takes a database UPDATE and
/// one Redis round trip: wait that long for it rather than building the page
/// from the primary for every request meanwhile.
const CHANGE_WAITS: u32 = 10;
const CHANGE_WAIT: Duration = Duration::from_millis(2);

/// The page's stamp, read after this request arrived (coalesced with
/// concurrent requests); a change in progress is waited for, briefly.
async fn current_stamp(cache: &Cache) -> Result<Stamp, String> {
    let mut stamp = cache.fresh_stamp().await?;
    for _ in 0..CHANGE_WAITS {
        if !stamp.changing {
            break;
        }
        tokio::time::sleep(CHANGE_WAIT).await;
        stamp = cache.fresh_stamp().await?;
    }
    Ok(stamp)
}

async fn index(State(st): State<Arc<AppState>>) -> Response {
    let stamp = match current_stamp(&st.cache).await {
        Ok(s) => s,
        Err(e) => {
            // Degraded: Redis is down or slow. The replica spares the primary.
            tracing::warn!(error = %st.cfg.secrets.scrub(&e), "cache read failed");
            return match build_page(&st, &st.replica).await {
                Ok(body) => page(body, "BYPASS"),
                Err(resp) => resp,
            };
        }
    };
    if stamp.changing {
        // A change is still being committed: build from the primary, store nothing.
        return match build_page(&st, &st.db).await {
            Ok(body) => page(body, "BYPASS"),
            Err(resp) => resp,
        };
    }
    if let Some(body) = st.page.get(stamp.version) {
        return page(body, "HIT");
    }
    let _fill = st.page.fill.lock().await;
    if let Some(body) = st.page.get(stamp.version) {
        return page(body, "HIT");
    }
    match tokio::time::timeout(CHECK_TIMEOUT, st.cache.get_page(stamp.version)).await {
        Ok(Ok(Some(body))) => {
            st.page.put(stamp.version, body.clone());
            return page(body, "HIT");
        }
        Ok(Ok(None)) | Err(_) => {}
        Ok(Err(e)) => tracing::warn!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "cache read failed"),
    }
    // Built from the primary: a page tagged with this version must show every
    // change counted in it, and an asynchronous replica may not have it yet.
    let body = match build_page(&st, &st.db).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    if let Ok(Err(e)) =
        tokio::time::timeout(CHECK_TIMEOUT, st.cache.set_page(stamp.version, &body, INDEX_TTL_SECS)).await
    {
        tracing::warn!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "cache write failed");
    }
    st.page.put(stamp.version, body.clone());
    page(body, "MISS")
}

async fn build_page(st: &AppState, pool: &Pool) -> Result<Bytes, Response> {
    let photos = async {
        let c = pool.get().await?;
        db::recent_photos(&c, INDEX_LIMIT).await
    }
    .await;
    match photos {
        Ok(p) => Ok(Bytes::from(render_index(&st.cfg, &p))),
        Err(e) => {
            tracing::error!(error = %st.cfg.secrets.scrub(&format!("{e:#}")), "listing photos failed");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                Html("<!doctype html><p>Temporarily unavailable.</p>\n"),
            )
                .into_response())
        }
    }
}

fn page(body: Bytes, cache: &'static str) -> Response {
    let mut res = Response::new(Body::from(body));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(X_CACHE, HeaderValue::from_static(cache));
    res
}
