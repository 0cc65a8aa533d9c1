//! The daemon's HTTP API (actix-web): submit, list, inspect, page candidates, follow events
//! (server-sent events, resumable with `Last-Event-ID`), cancel, health and Prometheus metrics.
//! Every error is JSON `{"error": "..."}` with a 4xx/5xx status; no message quotes a token.

use crate::capped::{read_capped, Capped};
use crate::daemon::store::StoreError;
use crate::daemon::{DaemonError, Shared};
use actix_web::http::{header, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use futures::StreamExt;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// An API error: a status and a message.
#[derive(Debug, thiserror::Error)]
#[error("{msg}")]
pub struct ApiError {
    status: StatusCode,
    msg: String,
}

impl ApiError {
    fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError {
            status,
            msg: msg.into(),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }
    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if self.status == StatusCode::UNAUTHORIZED {
            r.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        r.json(serde_json::json!({ "error": self.msg }))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!("store: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal storage error")
    }
}

impl From<DaemonError> for ApiError {
    fn from(e: DaemonError) -> ApiError {
        match e {
            DaemonError::BadRequest(m) => ApiError::new(StatusCode::BAD_REQUEST, m),
            DaemonError::ShuttingDown => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            DaemonError::Store(s) => s.into(),
            other => {
                tracing::error!("{other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

type State = web::Data<Arc<Shared>>;

/// Compares without an early exit, so timing does not reveal a prefix of the token.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the bearer token (mutating calls always; reads when `auth_reads`).
fn authorize(req: &HttpRequest, s: &Shared, mutating: bool) -> Result<(), ApiError> {
    if !mutating && !s.daemon.auth_reads {
        return Ok(());
    }
    let Some(token) = &s.token else {
        // Only possible on loopback (start refuses otherwise): a local, single-user daemon.
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if same(g.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid bearer token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer ...)",
        )),
    }
}

/// Search ids are the daemon's own (`s` + hex); anything else is refused before any lookup.
fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = id.len() <= 64
        && id.starts_with('s')
        && id[1..].chars().all(|c| c.is_ascii_hexdigit())
        && id.len() > 1;
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed search id (expected 's' followed by hex digits)",
        ))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no search {id}"))
}

/// Reads the body up to the daemon's limit.
async fn read_body(payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    read_capped(payload, limit).await.map_err(|e| match e {
        Capped::TooLarge => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        ),
        Capped::Read(e) => ApiError::new(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
    })
}

async fn submit(
    req: HttpRequest,
    s: State,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, true)?;
    let limit = s.daemon.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        ));
    }
    let body = read_body(payload, limit).await?;
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
    let id = s.submit(&value).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/searches/{id}")))
        .json(serde_json::json!({ "id": id, "status": "queued" })))
}

async fn list(req: HttpRequest, s: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    Ok(HttpResponse::Ok().json(s.store.list(1000)?))
}

async fn get(req: HttpRequest, s: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    check_id(&id)?;
    let Some(row) = s.search(&id)? else {
        return Err(not_found(&id));
    };
    // The summary (with the final training metrics) only for one search: the list stays small.
    let mut v = serde_json::to_value(row).map_err(StoreError::from)?;
    v["summary"] = s.store.summary(&id)?.unwrap_or(serde_json::Value::Null);
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn candidates(
    req: HttpRequest,
    s: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    check_id(&id)?;
    let page: Page = serde_urlencoded_query(req.query_string())?;
    ensure_exists(&s, &id)?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let (total, items) = s.store.candidates(&id, offset, limit)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "total": total, "offset": offset, "limit": limit, "items": items
    })))
}

/// 404 unless the search exists (the id's form is checked by `check_id` first).
fn ensure_exists(s: &State, id: &str) -> Result<(), ApiError> {
    match s.store.status(id)? {
        Some(_) => Ok(()),
        None => Err(not_found(id)),
    }
}

fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, ApiError> {
    web::Query::<T>::from_query(q)
        .map(web::Query::into_inner)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("query string: {e}")))
}

async fn events(
    req: HttpRequest,
    s: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    check_id(&id)?;
    ensure_exists(&s, &id)?;
    let after = match req.headers().get("Last-Event-ID") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "Last-Event-ID must be an event number",
                )
            })?,
        None => 0,
    };
    let stream = s.follow(&id, after).map(|item| {
        let text = match item {
            Ok(Some(e)) => format!("id: {}\nevent: {}\ndata: {}\n\n", e.seq, e.kind, e.json),
            Ok(None) => ": keep-alive\n\n".to_string(),
            Err(e) => {
                tracing::error!("event stream: {e}");
                "event: error\ndata: {\"error\":\"internal storage error\"}\n\n".to_string()
            }
        };
        Ok::<_, actix_web::Error>(web::Bytes::from(text))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .streaming(stream))
}

/// The prompts and replies of one proposal (`session` counts the search's starts, as the
/// `started` events do; `proposal` is the number in `parsed` / `rejected` events). Both are
/// numbers checked by the router, and the files are looked up inside the search's own run
/// directory, so no path ever comes from the client.
async fn exchanges(
    req: HttpRequest,
    s: State,
    path: web::Path<(String, u32, u32)>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    let (id, session, proposal) = path.into_inner();
    check_id(&id)?;
    ensure_exists(&s, &id)?;
    let items =
        crate::run::dir::read_exchanges(&s.run_dir(&id), session, proposal).map_err(|e| {
            tracing::error!(search = %id, "reading prompts and replies: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot read the run directory",
            )
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "session": session, "proposal": proposal, "items": items
    })))
}

async fn cancel(
    req: HttpRequest,
    s: State,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, true)?;
    check_id(&id)?;
    let Some(status) = s.store.status(&id)? else {
        return Err(not_found(&id));
    };
    if status.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("search {id} is already {}", status.as_str()),
        ));
    }
    s.cancel(&id).await?;
    Ok(HttpResponse::Accepted().json(serde_json::json!({ "id": *id, "cancelling": true })))
}

async fn health(s: State) -> HttpResponse {
    match s.store.journal_mode() {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })),
        Err(e) => {
            tracing::error!("health: {e}");
            HttpResponse::ServiceUnavailable()
                .json(serde_json::json!({ "status": "store unavailable" }))
        }
    }
}

async fn metrics(req: HttpRequest, s: State) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(s.render_metrics()))
}

async fn fallback() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(StatusCode::NOT_FOUND, "no such endpoint"))
}

/// Binds and starts the server on the current actix system; returns its handle and address.
pub fn serve(
    shared: Arc<Shared>,
    ip: IpAddr,
    port: u16,
    workers: usize,
) -> Result<(actix_web::dev::ServerHandle, SocketAddr), DaemonError> {
    let data = web::Data::new(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            // A malformed number in a path (e.g. a proposal) is a JSON 400 like every error.
            .app_data(web::PathConfig::default().error_handler(|e, _| {
                ApiError::new(StatusCode::BAD_REQUEST, format!("path: {e}")).into()
            }))
            .route("/health", web::get().to(health))
            .route("/metrics", web::get().to(metrics))
            .route("/searches", web::post().to(submit))
            .route("/searches", web::get().to(list))
            .route("/searches/{id}", web::get().to(get))
            .route("/searches/{id}/candidates", web::get().to(candidates))
            .route("/searches/{id}/events", web::get().to(events))
            .route("/searches/{id}/cancel", web::post().to(cancel))
            .route(
                "/searches/{id}/exchanges/{session}/{proposal}",
                web::get().to(exchanges),
            )
            .configure(crate::daemon::dashboard::routes)
            .default_service(web::to(fallback))
    })
    .workers(workers)
    // Event streams never end on their own: do not wait long for them at shutdown.
    .shutdown_timeout(1)
    .disable_signals()
    .bind((ip, port))
    .map_err(|e| DaemonError::Bind {
        addr: format!("{ip}:{port}"),
        msg: e.to_string(),
    })?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| DaemonError::Bind {
            addr: format!("{ip}:{port}"),
            msg: "no address bound".into(),
        })?;
    let server = server.run();
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!("http server: {e}");
        }
    });
    Ok((handle, addr))
}
