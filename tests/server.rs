//! The server loop over real TCP, as slow and careless clients use it: slow bodies do not
//! hold queue places, idle and half-sent connections are closed, the connection cap
//! answers 503, the whole-request backstop is problem+json, and shutdown is bounded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::http::*;
use hoiclip::api::server::{ServerLimits, serve};
use hoiclip::api::{AppState, ServeOptions, router};
use hoiclip::engine::EngineOptions;

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start(state: AppState, limits: ServerLimits) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(serve(listener, router(state), limits, async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        stop: Some(stop),
        done,
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        header_timeout: Duration::from_secs(1),
        max_connections: 64,
        max_connections_per_client: 64,
        shutdown_grace: Duration::from_secs(2),
        send_timeout: Duration::from_secs(30),
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// Reads until the server closes the connection (or 20 s pass); returns what came.
fn read_to_close(mut s: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).to_string(), started.elapsed())
}

fn request(addr: SocketAddr, head: &str, body: &[u8]) -> String {
    let mut s = connect(addr);
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    read_to_close(s).0
}

fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_uploads_get_408_and_never_hold_a_queue_place() {
    let (state, gate, _batches) = held_state(
        ServeOptions {
            body_timeout: Duration::from_secs(1),
            ..ServeOptions::default()
        },
        EngineOptions {
            max_queue: 2,
            max_batch_size: 1,
            ..EngineOptions::default()
        },
    )
    .await;
    gate.open();
    let server = start(state, limits()).await;
    let addr = server.addr;
    // Six clients start a 1000-byte upload and send one byte every 300 ms.
    let slow: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                s.write_all(b"POST /detect HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: 1000\r\n\r\n")
                    .unwrap();
                for _ in 0..20 {
                    if s.write_all(b"x").is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
                read_to_close(s).0
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // Meanwhile a normal client is served, not told the queue is full.
    let png = png();
    let fast = tokio::task::spawn_blocking(move || {
        request(
            addr,
            &format!(
                "POST /detect HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
                png.len()
            ),
            &png,
        )
    })
    .await
    .unwrap();
    assert_eq!(status_of(&fast), 200, "{fast}");
    for t in slow {
        let answer = t.join().unwrap();
        assert_eq!(status_of(&answer), 408, "{answer}");
        assert!(
            answer.contains("urn:hoiclip:problem:request-timeout"),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed() {
    let server = start(state(ServeOptions::default()).await, limits()).await;
    let addr = server.addr;
    let idle = std::thread::spawn(move || read_to_close(connect(addr)).1);
    let half = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /health/live HTTP/1.1\r\nhost:").unwrap();
        read_to_close(s).1
    });
    let kept_alive = std::thread::spawn(move || {
        let mut s = connect(addr);
        s.write_all(b"GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n")
            .unwrap();
        read_to_close(s)
    });
    for t in [idle, half] {
        let waited = t.join().unwrap();
        assert!(waited < Duration::from_secs(5), "closed after {waited:?}");
    }
    let (answer, waited) = kept_alive.join().unwrap();
    assert_eq!(status_of(&answer), 200);
    assert!(
        waited < Duration::from_secs(5),
        "idle keep-alive closed after {waited:?}"
    );
}

/// A server with `limits`, two idle connections held open, and the answer a third gets.
async fn third_connection(limits: ServerLimits) -> (Running, Vec<TcpStream>, String) {
    let server = start(state(ServeOptions::default()).await, limits).await;
    let held: Vec<TcpStream> = (0..2).map(|_| connect(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let addr = server.addr;
    let answer = tokio::task::spawn_blocking(move || {
        request(addr, "GET /health/live HTTP/1.1\r\nhost: x\r\n\r\n", b"")
    })
    .await
    .unwrap();
    (server, held, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_problem_json() {
    let (server, held, answer) = third_connection(ServerLimits {
        max_connections: 2,
        header_timeout: Duration::from_secs(5),
        ..limits()
    })
    .await;
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    drop(held);
    std::thread::sleep(Duration::from_millis(300));
    let addr = server.addr;
    let answer = tokio::task::spawn_blocking(move || {
        request(
            addr,
            "GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            b"",
        )
    })
    .await
    .unwrap();
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_bounded_by_the_grace_period() {
    let mut server = start(
        state(ServeOptions::default()).await,
        ServerLimits {
            header_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    // A client that never finishes its headers.
    let mut s = connect(server.addr);
    s.write_all(b"GET /health/live HTTP/1.1\r\nhost:").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    server.stop.take().unwrap().send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), &mut server.done)
        .await
        .expect("shutdown waited past its grace period")
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_request_backstop_answers_problem_json_and_is_counted() {
    let (state, gate, _batches) = held_state(
        ServeOptions {
            request_timeout: Duration::from_millis(200),
            ..ServeOptions::default()
        },
        EngineOptions::default(),
    )
    .await;
    // The backstop (request_timeout + 1 s) catches a request whose own phases never end:
    // here a JSON write whose body never completes within the body timeout (30 s).
    let server = start(state.clone(), limits()).await;
    let addr = server.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        s.write_all(b"POST /objects HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
            .unwrap();
        read_to_close(s).0
    })
    .await
    .unwrap();
    gate.open();
    assert_eq!(status_of(&answer), 503, "{answer}");
    assert!(answer.contains("urn:hoiclip:problem:timeout"), "{answer}");
    let metrics = request(
        addr,
        "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"",
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hoiclip_http_requests_total")
                && l.contains("route=\"/objects\"")
                && l.contains("status=\"503\"")),
        "the timed-out request is missing from the metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection() {
    let (_server, _held, answer) = third_connection(ServerLimits {
        max_connections_per_client: 2,
        header_timeout: Duration::from_secs(5),
        ..limits()
    })
    .await;
    assert_eq!(status_of(&answer), 503, "{answer}");
}

/// A PNG of random pixels (incompressible): its rendering is as large as its pixels.
fn noise_jpeg(side: u32) -> Vec<u8> {
    let mut x: u32 = 12345;
    let image = image::RgbImage::from_fn(side, side, |_, _| {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        image::Rgb([x as u8, (x >> 8) as u8, (x >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_loses_its_connection() {
    let server = start(
        state(ServeOptions {
            max_body_bytes: 64 << 20,
            ..ServeOptions::default()
        })
        .await,
        ServerLimits {
            max_connections: 1,
            send_timeout: Duration::from_secs(1),
            ..limits()
        },
    )
    .await;
    let addr = server.addr;
    let jpeg = noise_jpeg(3000);
    // Ask for a ~27 MB rendering and never read it.
    let stalled = tokio::task::spawn_blocking(move || {
        let mut s = connect(addr);
        write!(
            s,
            "POST /detect?render=true HTTP/1.1\r\nhost: x\r\ncontent-type: image/jpeg\r\ncontent-length: {}\r\n\r\n",
            jpeg.len()
        )
        .unwrap();
        s.write_all(&jpeg).unwrap();
        s
    })
    .await
    .unwrap();
    // The one connection slot comes back once the write has waited a second.
    let started = Instant::now();
    let answer = loop {
        let answer = tokio::task::spawn_blocking(move || {
            request(
                addr,
                "GET /health/live HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
                b"",
            )
        })
        .await
        .unwrap();
        if status_of(&answer) == 200 || started.elapsed() > Duration::from_secs(60) {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        status_of(&answer),
        200,
        "the stalled reader kept its connection"
    );
    drop(stalled);
}

/// A body declared larger than the limit is refused with 413 problem+json before any of
/// it is read: a client that asks first (`Expect: 100-continue`) is never told to send it,
/// and one that sends anyway is answered as soon as its headers are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_413_before_any_body_is_read() {
    let state = state(ServeOptions::default()).await;
    let running = start(state, limits()).await;
    for expect in ["Expect: 100-continue\r\n", ""] {
        let mut s = connect(running.addr);
        let head = format!(
            "POST /detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 100000000\r\n{expect}\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        // No body byte is sent: the answer must come from the headers alone.
        let started = Instant::now();
        let mut response = String::new();
        let mut chunk = vec![0u8; 4096];
        while !response.contains("payload-too-large") {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => response.push_str(&String::from_utf8_lossy(&chunk[..n])),
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "answered after {:?}",
            started.elapsed()
        );
        assert!(!response.contains("100 Continue"), "{response}");
        assert_eq!(status_of(&response), 413, "{response}");
        assert!(response.contains("payload-too-large"), "{response}");
    }
}
