//! Helpers the server benchmarks share: a test image, one HTTP/1.1 request on a kept-alive
//! connection, percentiles.
#![allow(dead_code)]

use std::io::Cursor;
use std::time::Duration;

use hoiclip::api::{RateLimit, ServeOptions};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Serves `app` on a loopback port (the server's own HTTP loop) until the process ends.
pub async fn listen(app: &hoiclip::app::App) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(hoiclip::api::server::serve(
        listener,
        hoiclip::api::router(app.state.clone()),
        app.limits,
        std::future::pending::<()>(),
    ));
    addr
}

/// API options for a benchmark client: no rate limit (one address sending as fast as it
/// can) and no request deadline in practice.
pub fn bench_api_options() -> ServeOptions {
    ServeOptions {
        request_timeout: Duration::from_secs(3600),
        rate_limit: RateLimit {
            per_second: 0,
            burst: 0,
        },
        ..ServeOptions::default()
    }
}

/// Server settings for a benchmark: random weights of the full-size model (`full`) or
/// the demo config, an in-memory vocabulary, [`bench_api_options`].
pub fn random_model_settings(full: bool) -> hoiclip::config::Settings {
    use hoiclip::model::hoiclip::HoiclipConfig;
    hoiclip::config::Settings {
        model: hoiclip::config::ModelSource::Random(Box::new(if full {
            HoiclipConfig::hico_det()
        } else {
            HoiclipConfig::demo()
        })),
        database_url: "sqlite::memory:".into(),
        api: bench_api_options(),
        ..hoiclip::config::Settings::default()
    }
}

/// The `p` quantile (0..=1) of sorted values; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A 640x480 JPEG with some structure (deterministic).
pub fn test_image() -> Vec<u8> {
    test_image_sized(640, 480)
}

/// A gradient JPEG of `w` x `h` pixels.
pub fn test_image_sized(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

/// One request on a kept-alive connection; returns the status (0 when it failed).
pub async fn request(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> u16 {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    if stream.get_mut().write_all(head.as_bytes()).await.is_err()
        || stream.get_mut().write_all(body).await.is_err()
    {
        return 0;
    }
    let mut line = String::new();
    if stream.read_line(&mut line).await.is_err() {
        return 0;
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut length = 0usize;
    loop {
        line.clear();
        if stream.read_line(&mut line).await.is_err() {
            return 0;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut sink = vec![0u8; length];
    if stream.read_exact(&mut sink).await.is_err() {
        return 0;
    }
    status
}
