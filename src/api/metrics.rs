//! Prometheus metrics: requests by route and status, latency histograms, queue depth,
//! inference time, classifier version. One process-wide recorder (the `metrics` facade).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once; later calls (tests build many routers) reuse it.
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            // Seconds for timings; image counts for the batch-size histograms.
            let images = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ])
                .ok()?
                .set_buckets_for_metric(Matcher::Full("hoiclip_batch_size".into()), &images)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("hoiclip_forward_images".into()), &images)
                .ok()?;
            builder.install_recorder().ok()
        })
        .as_ref()
}

/// Counts and times every request by its route template (not the raw path, which would
/// explode the label space) and status.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // Standard methods only: a label per made-up method name would let any client grow
    // the metric set (and memory) without bound.
    let method = match request.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" | "TRACE"
        | "CONNECT") => m.to_string(),
        _ => "other".to_string(),
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("hoiclip_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("hoiclip_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Prometheus metrics (text format): requests by route and status, latency histograms,
/// queue depth, inference time, batch size, classifier version, rejections.
#[utoipa::path(get, path = "/metrics", tag = "operations", operation_id = "metrics",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn render() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let body = handle().map(|h| h.render()).unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
}
