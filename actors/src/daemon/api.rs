//! The daemon's HTTP API (actix-web): submit, list, inspect, page candidates, follow events
//! (server-sent events, resumable with `Last-Event-ID`), cancel, health and Prometheus metrics.
//! Every error is JSON `{"error": "..."}` with a 4xx/5xx status; no message quotes a token.
//!
//! Cross-site requests are refused whether or not a token is set (a loopback daemon without
//! one is otherwise open to any web page its operator visits): every request must name the
//! daemon in `Host` (the bound address, `localhost` on loopback, or `daemon.allowed_hosts`;
//! this also defeats DNS rebinding) and, when it carries an `Origin`, come from that origin;
//! a POST body must be `application/json`, which no HTML form can send without a preflight.
//! Store calls run on blocking threads ([`Shared::db`]).
//!
//! Longer than the ~400 lines aimed at: every route and the guards in front of them are the
//! daemon's whole HTTP surface, kept in one place so a reviewer sees all of it at once.

use crate::capped::{read_capped, Capped};
use crate::daemon::store::StoreError;
use crate::daemon::{DaemonError, Shared};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::{from_fn, Next};
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
            DaemonError::TooMany(m) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, m),
            DaemonError::Store(s) => s.into(),
            other => {
                tracing::error!("{other}");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

type State = web::Data<Arc<Shared>>;

/// Whether `host` (a `Host` header or an origin's authority, `name[:port]`) names this daemon:
/// its bound address, `localhost` and the loopback addresses on its port when bound to
/// loopback, any IP address on its port when bound to all interfaces, or an entry of
/// `daemon.allowed_hosts` (`name` for any port, `name:port` for one).
fn host_allowed(host: &str, s: &Shared) -> bool {
    match s.bound.get() {
        Some(bound) => names_us(host, *bound, &s.daemon.allowed_hosts),
        None => false,
    }
}

/// [`host_allowed`] for a daemon bound to `bound` with these `allowed` hosts.
fn names_us(host: &str, bound: SocketAddr, allowed: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let port = bound.port();
    let mut names = vec![bound.to_string()];
    if bound.ip().is_loopback() {
        for n in ["localhost", "127.0.0.1", "[::1]"] {
            names.push(format!("{n}:{port}"));
        }
    }
    // Without a port, the host is the scheme's default one: it names us only if we are there.
    let with_port = if host.starts_with('[') {
        host.contains("]:")
    } else {
        host.contains(':')
    };
    let host_port = if with_port {
        host.clone()
    } else {
        format!("{host}:80")
    };
    if names.contains(&host_port) {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((n, p)) if with_port && p.chars().all(|c| c.is_ascii_digit()) => n,
        _ => host.as_str(),
    };
    // Bound to every interface: any address of this machine, written as an IP, on our port
    // (a rebinding page can only name us by a domain, which must be listed).
    let literal = name.trim_start_matches('[').trim_end_matches(']');
    if bound.ip().is_unspecified()
        && literal.parse::<std::net::IpAddr>().is_ok()
        && host_port.ends_with(&format!(":{port}"))
    {
        return true;
    }
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        a == host || a == name
    })
}

/// Refuses requests from other sites: the `Host` must name this daemon, an `Origin` must be
/// this daemon's, and a POST with a body must be JSON.
fn check_site(req: &ServiceRequest, s: &Shared) -> Result<(), ApiError> {
    let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, m);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if host_allowed(&h, s) => {}
        Some(h) => {
            return Err(forbidden(format!(
                "Host {h:?} is not this daemon's (add it to daemon.allowed_hosts)"
            )))
        }
        None => return Err(forbidden("missing Host header".into())),
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or_default();
        let authority = o
            .strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .filter(|a| !a.is_empty() && !a.contains('/'));
        if !authority.is_some_and(|a| host_allowed(a, s)) {
            return Err(forbidden(format!(
                "cross-origin request from {o:?} refused"
            )));
        }
    }
    if req.method() == Method::POST {
        // A body needs a JSON content type; a bodiless POST (cancel) may carry none.
        match req.headers().get(header::CONTENT_TYPE) {
            Some(ct) if !is_json(ct) => return Err(unsupported()),
            Some(_) => {}
            None if has_body(req.headers()) => return Err(unsupported()),
            None => {}
        }
    }
    Ok(())
}

fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "request bodies must be Content-Type: application/json",
    )
}

fn is_json(ct: &header::HeaderValue) -> bool {
    ct.to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

fn has_body(h: &header::HeaderMap) -> bool {
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// The cross-site guard around every route (the dashboard's included).
async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // Fails closed: without the state there is nothing to check against.
    let Some(s) = req.app_data::<State>() else {
        return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into());
    };
    check_site(&req, s)?;
    next.call(req).await
}

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
    if !req.headers().get(header::CONTENT_TYPE).is_some_and(is_json) {
        return Err(unsupported());
    }
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
    Ok(HttpResponse::Ok().json(s.db(|st| st.list(1000)).await?))
}

async fn get(req: HttpRequest, s: State, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &s, false)?;
    check_id(&id)?;
    let Some(row) = s.search_row(&id).await? else {
        return Err(not_found(&id));
    };
    // The summary (with the final training metrics) only for one search: the list stays small.
    let mut v = serde_json::to_value(row).map_err(StoreError::from)?;
    let key = id.clone();
    v["summary"] = s
        .db(move |st| st.summary(&key))
        .await?
        .unwrap_or(serde_json::Value::Null);
    // A store error of this search (its status may lag behind what happened).
    v["store_error"] = s.store_error(&id).into();
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
    ensure_exists(&s, &id).await?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let key = id.clone();
    let (total, items) = s.db(move |st| st.candidates(&key, offset, limit)).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "total": total, "offset": offset, "limit": limit, "items": items
    })))
}

/// 404 unless the search exists (the id's form is checked by `check_id` first).
async fn ensure_exists(s: &State, id: &str) -> Result<(), ApiError> {
    match s.status(id).await? {
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
    ensure_exists(&s, &id).await?;
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
    // Counted while open: one client cannot hold every connection the daemon has.
    let client = req
        .peer_addr()
        .map(|a| a.ip())
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let slot = s.open_stream(client)?;
    let stream = s.follow(&id, after).map(move |item| {
        let _open = &slot;
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
    ensure_exists(&s, &id).await?;
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
    let Some(status) = s.status(&id).await? else {
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
    match s.db(|st| st.journal_mode()).await {
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
        .body(s.render_metrics().await))
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
    let data = web::Data::new(shared.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(from_fn(guard))
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
    let _ = shared.bound.set(addr);
    let server = server.run();
    let handle = server.handle();
    actix::spawn(async move {
        if let Err(e) = server.await {
            tracing::error!("http server: {e}");
        }
    });
    Ok((handle, addr))
}

#[cfg(test)]
mod tests {
    use super::names_us;
    use std::net::SocketAddr;

    #[test]
    fn hosts_name_the_daemon_by_its_address_loopback_names_or_the_allowed_list() {
        let lo: SocketAddr = "127.0.0.1:8470".parse().unwrap();
        let allowed = vec!["ists.example".to_string(), "proxy.example:443".to_string()];
        for ok in [
            "127.0.0.1:8470",
            "LOCALHOST:8470",
            "[::1]:8470",
            "ists.example",
            "ists.example:9",
            "proxy.example:443",
        ] {
            assert!(names_us(ok, lo, &allowed), "{ok}");
        }
        for bad in [
            "evil.example:8470",
            "127.0.0.1:8471",
            "localhost",
            "127.0.0.1",
            "proxy.example:80",
            "10.0.0.5:8470",
            "",
        ] {
            assert!(!names_us(bad, lo, &allowed), "{bad}");
        }
        // Every interface: IP literals on our port pass, names still need the list.
        let any: SocketAddr = "0.0.0.0:8470".parse().unwrap();
        assert!(names_us("10.0.0.5:8470", any, &[]));
        assert!(names_us("[fe80::1]:8470", any, &[]));
        assert!(!names_us("10.0.0.5:8471", any, &[]));
        assert!(!names_us("rebind.example:8470", any, &[]));
    }
}
