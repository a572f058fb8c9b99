//! Detection latency while a vocabulary pack imports, against idle: the real server on
//! loopback, one client sending `POST /detect` back to back, while another imports a pack
//! of 600 new interactions (20 new verbs x 30 new objects: 650 prompts through the text
//! tower). The engine's worker runs the import's text passes between detections, so the
//! goal is that p99 grows by at most one text pass (`text_pass_ms`, measured alone).
//!
//!     cargo bench --bench import_latency              # demo config
//!     cargo bench --bench import_latency -- --full    # full-size (random weights)

use std::io::Cursor;
use std::time::{Duration, Instant};

use hoiclip::api::{RateLimit, ServeOptions, router};
use hoiclip::config::{ModelSource, Settings};
use hoiclip::engine::TEXT_BATCH;
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::model::hoiclip::HoiclipConfig;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(full));
}

async fn run(full: bool) {
    let settings = Settings {
        model: ModelSource::Random(if full {
            HoiclipConfig::hico_det()
        } else {
            HoiclipConfig::demo()
        }),
        database_url: "sqlite::memory:".into(),
        api: ServeOptions {
            request_timeout: Duration::from_secs(3600),
            rate_limit: RateLimit {
                per_second: 0,
                burst: 0,
            },
            ..ServeOptions::default()
        },
        ..Settings::default()
    };
    let app = hoiclip::app::build(&settings).await.expect("server");
    let service = app.service().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(hoiclip::api::server::serve(
        listener,
        router(app.state.clone()),
        app.limits,
        std::future::pending::<()>(),
    ));

    // One text pass of TEXT_BATCH prompts like the pack's, alone (median of 5).
    let tokenizer = ClipTokenizer::new().expect("tokenizer");
    let ids: Vec<Vec<u32>> = (0..TEXT_BATCH)
        .map(|i| {
            tokenizer
                .encode(&format!("a photo of a person probing a gadget{i}"))
                .expect("tokens")
        })
        .collect();
    let mut passes = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        service
            .engine()
            .embed_text(ids.clone())
            .await
            .expect("text pass");
        passes.push(ms(start));
    }
    passes.sort_by(f64::total_cmp);
    let text_pass = passes[passes.len() / 2];

    let image = test_image();
    let samples = if full { 8 } else { 60 };
    let mut client = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    request(
        &mut client,
        "POST",
        "/detect?top_k=20",
        "image/jpeg",
        &image,
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..samples {
        let start = Instant::now();
        assert_eq!(
            request(
                &mut client,
                "POST",
                "/detect?top_k=20",
                "image/jpeg",
                &image
            )
            .await,
            200
        );
        idle.push(ms(start));
    }

    // Three imports one after another (more overlapping samples), detections throughout.
    let import = tokio::spawn(async move {
        let mut admin = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
        let mut took = Vec::new();
        for round in 0..IMPORTS {
            let start = Instant::now();
            let status = request(
                &mut admin,
                "POST",
                "/packs/import",
                "application/json",
                &pack_json(round),
            )
            .await;
            assert_eq!(status, 201, "import {round} failed");
            took.push(ms(start));
        }
        took
    });
    let mut during = Vec::new();
    while !import.is_finished() {
        let start = Instant::now();
        assert_eq!(
            request(
                &mut client,
                "POST",
                "/detect?top_k=20",
                "image/jpeg",
                &image
            )
            .await,
            200
        );
        // Only requests that overlapped the imports count.
        if !import.is_finished() {
            during.push(ms(start));
        }
    }
    let imports = import.await.expect("imports");
    let import_ms = imports.iter().sum::<f64>() / imports.len() as f64;
    idle.sort_by(f64::total_cmp);
    during.sort_by(f64::total_cmp);
    let (i50, i99) = (pct(&idle, 0.5), pct(&idle, 0.99));
    let (d50, d99) = (pct(&during, 0.5), pct(&during, 0.99));
    println!(
        "config {}, {} CPU backend, 640x480 JPEG, pack of 600 interactions (650 prompts)",
        if full { "full-size" } else { "demo" },
        hoiclip::backend::cpu_backend_name()
    );
    println!(
        "text pass ({TEXT_BATCH} prompts) alone: {text_pass:.1} ms; each of {IMPORTS} imports took {import_ms:.0} ms on average"
    );
    println!("phase          requests  p50 ms  p99 ms");
    println!("idle           {:>8}  {i50:>6.1}  {i99:>6.1}", idle.len());
    println!("during import  {:>8}  {d50:>6.1}  {d99:>6.1}", during.len());
    println!(
        "p99 growth {:+.1} ms = {:.2} text passes (goal: <= 1)",
        d99 - i99,
        (d99 - i99) / text_pass
    );
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

const IMPORTS: usize = 3;

/// Pack `round`: 20 new verbs, 30 new objects, every pair an interaction (names differ
/// per round, so every prompt is new).
fn pack_json(round: usize) -> Vec<u8> {
    let verb = |v: usize| format!("probe{round}x{v}");
    let object = |o: usize| format!("gadget{round}x{o}");
    let verbs: Vec<serde_json::Value> = (0..20)
        .map(|v| serde_json::json!({"name": verb(v), "ing": format!("probing{round}x{v}")}))
        .collect();
    let objects: Vec<serde_json::Value> = (0..30)
        .map(|o| serde_json::json!({"name": object(o), "prompt": format!("a photo of a {}", object(o))}))
        .collect();
    let mut interactions = Vec::new();
    for v in 0..20 {
        for o in 0..30 {
            interactions.push(serde_json::json!({
                "verb": verb(v),
                "object": object(o),
                "prompt": format!("a photo of a person probing{round}x{v} a {}", object(o)),
            }));
        }
    }
    serde_json::to_vec(&serde_json::json!({
        "name": format!("bench-import-{round}"), "verbs": verbs, "objects": objects, "interactions": interactions,
    }))
    .expect("json")
}

/// A 640x480 JPEG with some structure (deterministic).
fn test_image() -> Vec<u8> {
    let img = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([
            (x * 255 / 640) as u8,
            (y * 255 / 480) as u8,
            ((x ^ y) & 0xff) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg)
        .expect("encode");
    out.into_inner()
}

/// One request on a kept-alive connection; returns the status (0 when it failed).
async fn request(
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
