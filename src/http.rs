//! A small read-only HTTP/1.1 server (hyper) for what jam shows on the web: jamd's `--metrics`
//! endpoint and `jam check --watch`'s class board. Pages are looked up by path and served to `GET`
//! and `HEAD`; every other method gets 405, so nothing served can change anything. Connections
//! are bounded in number and in time.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Most connections served at once; more wait in the listen queue.
const MAX_CLIENTS: usize = 16;

/// How long a connection may take to send its request and to be served.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One page: its content type and body.
pub struct Page {
    /// The `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

impl Page {
    /// A page of `content_type` with `body`.
    pub fn new(content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Page {
            content_type,
            body: body.into(),
        }
    }
}

/// Finds the page at a path, made when it is asked for.
pub type PageFn = dyn Fn(&str) -> Option<Page> + Send + Sync;

/// What a site serves: the page at a path, and what to say for any other path.
pub struct Site {
    /// The page at a path, made when it is asked for.
    pub page: Box<PageFn>,
    /// The body of a 404 (e.g. `not found; try /metrics`).
    pub not_found: &'static str,
    /// The body of a 405.
    pub read_only: &'static str,
    /// Whether pages may be cached (the board's may not: they change every round).
    pub no_store: bool,
    /// Names the site in debug logs.
    pub name: &'static str,
}

/// Serves `site` on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, site: Arc<Site>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    debug!(site = site.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let site = site.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let name = site.name;
            let service = hyper::service::service_fn(move |request| {
                let site = site.clone();
                async move { Ok::<_, Infallible>(answer(&request, &site)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            match tokio::time::timeout(REQUEST_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!(site = name, %peer, error = %e, "HTTP request failed"),
                Err(_) => debug!(site = name, %peer, "HTTP request timed out"),
            }
        });
    }
}

fn answer<B>(request: &Request<B>, site: &Site) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    let (status, page) = match request.method() {
        &Method::GET | &Method::HEAD => match (site.page)(request.uri().path()) {
            Some(page) => (StatusCode::OK, page),
            None => (StatusCode::NOT_FOUND, Page::new(text, site.not_found)),
        },
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            Page::new(text, site.read_only),
        ),
    };
    let mut response = Response::new(Full::new(page.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(page.content_type),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if site.no_store {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    response
}
