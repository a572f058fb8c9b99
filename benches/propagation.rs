//! How fast a vocabulary write reaches another replica: two `hoiclip serve` processes (the
//! demo model) on one Postgres database; each round adds an object through replica A and
//! polls replica B's `GET /vocabulary` (every 2 ms) until B's classifier has that version.
//! Goal (issue 15): live on B within 200 ms at p99.
//!
//! `HOICLIP_BENCH_POSTGRES_URL` names the server (default: the one `.ci/postgres.sh start`
//! runs); `ITERS` rounds (default 100); `LOAD` clients (default 0) that keep B busy with
//! 640x480 detections meanwhile, so B's queue is never empty: a new version then waits
//! behind the batch B is running, not behind its queue. Run: `cargo bench --bench
//! propagation`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One HTTP/1.1 request with a JSON body and `connection: close`; (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    send(port, method, path, "application/json", body.as_bytes())
}

fn send(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(port: u16, db: &str) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database-url", db, "--rate-limit", "0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("start hoiclip serve");
    let server = Server(child);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        if let Ok((200, _)) = http(port, "GET", "/health/ready", "") {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("server on port {port} not ready after 180 s");
}

fn create_database(admin: &str) -> String {
    let name = format!("bench_propagation_{}", std::process::id());
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("not a database URL: {admin}"),
    };
    let create = format!("CREATE DATABASE {name}");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(admin).await.expect(
                "connect to HOICLIP_BENCH_POSTGRES_URL (start one: bash .ci/postgres.sh start)",
            );
            conn.execute(sqlx::AssertSqlSafe(create))
                .await
                .expect("create database");
        });
    url
}

/// A 640x480 PNG (a gradient: the demo model finds boxes in it).
fn photo() -> Vec<u8> {
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG");
    out.into_inner()
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let k = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[k]
}

fn main() {
    let admin = std::env::var("HOICLIP_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://hoiclip@127.0.0.1:55432/postgres".into());
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let db = create_database(&admin);
    let (pa, pb) = (free_port(), free_port());
    let _a = start(pa, &db);
    let _b = start(pb, &db);
    let load: usize = std::env::var("LOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let detections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..load)
        .map(|_| {
            let (stop, detections) = (stop.clone(), detections.clone());
            std::thread::spawn(move || {
                let image = photo();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok((200, _)) = send(pb, "POST", "/detect", "image/png", &image) {
                        detections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    if load > 0 {
        // Let the queue fill before the first write.
        std::thread::sleep(Duration::from_secs(2));
    }
    let measuring = Instant::now();

    let mut to_b = Vec::with_capacity(iters);
    let mut after_a = Vec::with_capacity(iters);
    let mut on_a = Vec::with_capacity(iters);
    for i in 0..iters {
        let sent = Instant::now();
        let (status, body) = http(
            pa,
            "POST",
            "/objects",
            &format!("{{\"name\": \"gadget {}\"}}", i + 1),
        )
        .expect("write on A");
        assert_eq!(status, 201, "{body}");
        let answered = Instant::now();
        let version = json(&body)["vocabulary_version"]
            .as_i64()
            .expect("a version");
        loop {
            let (status, body) = http(pb, "GET", "/vocabulary", "").expect("read B");
            assert_eq!(status, 200, "{body}");
            if json(&body)["classifier_version"].as_i64() >= Some(version) {
                break;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "B never reached {version}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let live = Instant::now();
        to_b.push((live - sent).as_secs_f64() * 1000.0);
        after_a.push(live.saturating_duration_since(answered).as_secs_f64() * 1000.0);
        on_a.push((answered - sent).as_secs_f64() * 1000.0);
    }
    let seconds = measuring.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let load_note = match load {
        0 => "B idle".to_string(),
        n => format!(
            "B kept busy by {n} detection clients ({:.2} detections/s answered)",
            detections.load(std::sync::atomic::Ordering::Relaxed) as f64 / seconds
        ),
    };
    println!(
        "propagation over Postgres LISTEN/NOTIFY, two `hoiclip serve` processes (demo model), {iters} writes (POST /objects on A), {load_note}"
    );
    println!("| measure | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|");
    for (name, mut values) in [
        ("write sent to A -> live on A (A's answer)", on_a),
        ("write sent to A -> live on B", to_b),
        ("A answered -> live on B", after_a),
    ] {
        values.sort_by(f64::total_cmp);
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} |",
            percentile(&values, 0.5),
            percentile(&values, 0.9),
            percentile(&values, 0.99),
            values[values.len() - 1]
        );
    }
}
