//! The HTTP/1.1 server loop: axum's router on hyper, with the connection-level limits that
//! `axum::serve` does not expose: a header-read timeout that also closes idle keep-alive
//! connections, a cap on open connections (kept under the descriptor limit), and a
//! graceful shutdown bounded by a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// Connection-level limits (`hoiclip serve` flags).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Time to receive a request's headers; also how long an idle keep-alive connection
    /// stays open between requests.
    pub header_timeout: Duration,
    /// Open connections at most; more are answered 503 and closed at once.
    pub max_connections: usize,
    /// After a shutdown signal, how long requests in flight may take to finish.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Descriptors this process may still open for connections: the soft RLIMIT_NOFILE
/// less room for the database, model files, logs and the listener.
pub fn descriptor_room() -> Option<usize> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; no other memory is touched.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !ok || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    usize::try_from(limit.rlim_cur)
        .ok()
        .map(|n| n.saturating_sub(64))
}

/// The connection cap actually used: the requested one, lowered to fit the descriptor
/// limit (so accepting can never exhaust descriptors the server needs itself).
pub fn effective_max_connections(requested: usize) -> usize {
    match descriptor_room() {
        Some(room) => requested.min(room).max(1),
        None => requested.max(1),
    }
}

const OVER_CAPACITY: &str = "{\"type\":\"urn:hoiclip:problem:unavailable\",\"title\":\"Service unavailable\",\"status\":503,\"detail\":\"too many open connections; retry shortly\"}";

/// Answers a connection over the cap with a 503 and closes it, spending at most a second.
async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{OVER_CAPACITY}",
        OVER_CAPACITY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits at most
/// `limits.shutdown_grace` for the connections in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: back off
                    // briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("hoiclip_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = app
            .clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request
                    .extensions_mut()
                    .insert(ConnectInfo::<SocketAddr>(peer));
                request
            });
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!(
        grace_s = limits.shutdown_grace.as_secs_f64(),
        "shutting down: finishing requests in flight"
    );
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = limits
                .max_connections
                .saturating_sub(slots.available_permits()),
            "grace period over: closing the remaining connections"
        );
    }
    Ok(())
}
