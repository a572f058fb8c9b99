//! Load on loopback: the real server (router, engine, worker) on 127.0.0.1, driven by a
//! small keep-alive HTTP/1.1 client at several concurrencies; throughput and p50/p99
//! latency, plus the server's overhead over the bare model call at batch 1.
//!
//!     cargo bench --bench load                  # demo config, concurrency 1/4/16/64
//!     cargo bench --bench load -- --full        # full-size config (random weights)
//!     cargo bench --bench load -- --requests 64 --batch 8 --policy pad
//!     cargo bench --bench load -- --full --mixed --policy pad   # 8 sizes, as phones send

use std::sync::Arc;
use std::time::{Duration, Instant};

use hoiclip::backend::Cpu;
use hoiclip::config::{ModelSource, Settings};
use hoiclip::detector::{DetectOptions, Detector};
use hoiclip::engine::{BatchPolicy, EngineOptions};
use hoiclip::model::hoiclip::HoiclipConfig;
use hoiclip::vision::{DecodeLimits, decode};
use tokio::io::BufReader;
use tokio::net::TcpStream;

mod common;
use common::{bench_api_options, listen, percentile, request, test_image};

struct Args {
    full: bool,
    requests: Option<usize>,
    batch: usize,
    policy: BatchPolicy,
    delay_ms: u64,
    levels: Vec<usize>,
    mixed: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        argv.iter()
            .position(|a| a == flag)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let full = argv.iter().any(|a| a == "--full");
    Args {
        full,
        requests: value("--requests").and_then(|v| v.parse().ok()),
        batch: value("--batch").and_then(|v| v.parse().ok()).unwrap_or(8),
        policy: match value("--policy").as_deref() {
            Some("pad") => BatchPolicy::Pad,
            _ => BatchPolicy::SameSize,
        },
        delay_ms: value("--delay").and_then(|v| v.parse().ok()).unwrap_or(0),
        mixed: argv.iter().any(|a| a == "--mixed"),
        levels: value("--levels")
            .map(|v| v.split(',').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_else(|| {
                if full {
                    vec![1, 4, 16]
                } else {
                    vec![1, 4, 16, 64]
                }
            }),
    }
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let settings = Settings {
        model: ModelSource::Random(Box::new(if args.full {
            HoiclipConfig::hico_det()
        } else {
            HoiclipConfig::demo()
        })),
        database_url: "sqlite::memory:".into(),
        engine: EngineOptions {
            max_queue: 256,
            max_batch_size: args.batch,
            max_batch_delay: Duration::from_millis(args.delay_ms),
            policy: args.policy,
        },
        api: bench_api_options(),
        ..Settings::default()
    };
    // Built as `hoiclip serve` builds it; the bare-model comparisons read the same
    // detector and classifier set.
    let slot = Arc::new(std::sync::Mutex::new(None));
    let service = hoiclip::app::service_on::<Cpu, _, _>(
        &settings,
        Default::default(),
        "cpu",
        hoiclip::backend::cpu_backend_name(),
        {
            let slot = slot.clone();
            move |runner| {
                *slot.lock().expect("slot") = Some(runner.registry().clone());
                runner
            }
        },
    )
    .await
    .expect("service");
    // The worker's sets: its runner was made before the first set was built through it.
    let sets = slot
        .lock()
        .expect("slot")
        .take()
        .expect("the runner was made");
    // The bare-model comparisons run a second copy of the same seeded model here (the
    // service's own copy lives on its worker).
    let detector = Arc::new(
        Detector::<Cpu>::random(
            if args.full {
                HoiclipConfig::hico_det()
            } else {
                HoiclipConfig::demo()
            },
            &Default::default(),
        )
        .expect("detector"),
    );
    let set = sets
        .get(&service.classes().expect("classifier"))
        .expect("registered set");
    let body = Arc::new(test_image());
    // --mixed: each client cycles through photos of 8 sizes and aspect ratios (4:3, 3:4,
    // 16:9, 9:16, 3:2, 2:3, 1:1, 19.5:9), so almost no two requests in a row share a
    // resized size, as with a phone app's traffic.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(if args.mixed {
        [
            (640, 480),
            (480, 640),
            (1280, 720),
            (720, 1280),
            (900, 600),
            (600, 900),
            (700, 700),
            (1560, 720),
        ]
        .iter()
        .map(|&(w, h)| common::test_image_sized(w, h))
        .collect()
    } else {
        vec![test_image()]
    });

    if std::env::args().any(|a| a == "--scaling") {
        scaling(&detector, &set, &body);
        return;
    }

    let options = DetectOptions {
        max_results: 20,
        ..DetectOptions::default()
    };
    let app = hoiclip::app::assemble(service, &settings);
    app.make_ready().await.expect("warm-up");
    let addr = listen(&app).await;

    println!(
        "config {}, batch <= {} ({:?}), delay {} ms, {}",
        if args.full { "full-size" } else { "demo" },
        args.batch,
        args.policy,
        args.delay_ms,
        if args.mixed {
            "JPEGs of 8 sizes"
        } else {
            "640x480 JPEG"
        },
    );
    overhead(
        &detector,
        &set,
        &options,
        &body,
        addr,
        if args.full { 4 } else { 20 },
    )
    .await;
    println!("concurrency  requests  throughput/s  p50 ms  p99 ms  non-200");
    for &c in &args.levels {
        let requests = args.requests.unwrap_or(if args.full {
            2 * c.max(2)
        } else {
            (8 * c).max(40)
        });
        let started = Instant::now();
        let per_client = requests.div_ceil(c);
        let mut clients = Vec::new();
        for client in 0..c {
            let bodies = bodies.clone();
            clients.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let mut stream = BufReader::new(stream);
                let mut out = Vec::new();
                for i in 0..per_client {
                    let body = &bodies[(client + i) % bodies.len()];
                    let t = Instant::now();
                    let status =
                        request(&mut stream, "POST", "/detect?top_k=20", "image/jpeg", body).await;
                    out.push((t.elapsed().as_secs_f64() * 1000.0, status));
                }
                out
            }));
        }
        let mut latencies = Vec::new();
        let mut failed = 0;
        for client in clients {
            for (ms, status) in client.await.expect("client") {
                if status == 200 {
                    latencies.push(ms);
                } else {
                    failed += 1;
                }
            }
        }
        let wall = started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        let done = latencies.len() + failed;
        println!(
            "{c:>11}  {done:>8}  {:>12.2}  {:>6.1}  {:>6.1}  {failed:>7}",
            latencies.len() as f64 / wall,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
        );
    }
}

/// Server overhead at batch 1: the bare call (decode + detect on a blocking thread) and
/// one request over HTTP, alternated `rounds` times so drift hits both alike; medians.
async fn overhead(
    detector: &Arc<Detector<Cpu>>,
    set: &Arc<hoiclip::classifier::ClassifierSet<Cpu>>,
    options: &DetectOptions,
    body: &Arc<Vec<u8>>,
    addr: std::net::SocketAddr,
    rounds: usize,
) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let mut stream = BufReader::new(stream);
    // The bare calls run on one long-lived thread, as the engine's worker does.
    let (go, calls) = std::sync::mpsc::channel::<()>();
    let (done, mut timings) = tokio::sync::mpsc::unbounded_channel::<f64>();
    let (d, s, o, b) = (detector.clone(), set.clone(), options.clone(), body.clone());
    std::thread::spawn(move || {
        while calls.recv().is_ok() {
            let start = Instant::now();
            let image = decode(&b, DecodeLimits::default()).expect("decode");
            d.detect_with_set(std::slice::from_ref(&image), &o, &s)
                .expect("detect");
            let _ = done.send(start.elapsed().as_secs_f64() * 1000.0);
        }
    });
    let (mut bare, mut served) = (Vec::new(), Vec::new());
    for round in 0..=rounds {
        go.send(()).expect("bare thread");
        let bare_ms = timings.recv().await.expect("bare call");
        let start = Instant::now();
        let status = request(&mut stream, "POST", "/detect?top_k=20", "image/jpeg", body).await;
        let served_ms = start.elapsed().as_secs_f64() * 1000.0;
        assert_eq!(status, 200);
        if round > 0 {
            bare.push(bare_ms);
            served.push(served_ms);
        }
    }
    bare.sort_by(f64::total_cmp);
    served.sort_by(f64::total_cmp);
    let (b, s) = (percentile(&bare, 0.5), percentile(&served, 0.5));
    println!(
        "batch 1, {rounds} alternating rounds: bare decode+detect p50 {b:.1} ms, over HTTP p50 {s:.1} ms, overhead {:+.1} ms ({:+.2} %)",
        s - b,
        (s - b) / b * 100.0
    );
}

/// Milliseconds per image of the bare model at batch 1, 2, 4, 8 (same-size images).
fn scaling(detector: &Detector<Cpu>, set: &hoiclip::classifier::ClassifierSet<Cpu>, body: &[u8]) {
    let image = decode(body, DecodeLimits::default()).expect("decode");
    let options = DetectOptions {
        max_results: 20,
        ..DetectOptions::default()
    };
    let prepare_start = Instant::now();
    let input = detector.prepare(&image);
    println!(
        "prepare (resize both branches): {:.1} ms",
        prepare_start.elapsed().as_secs_f64() * 1000.0
    );
    for n in [1usize, 2, 4, 8] {
        let items: Vec<hoiclip::detector::BatchItem<'_, Cpu>> = (0..n)
            .map(|_| hoiclip::detector::BatchItem {
                input: &input,
                options: &options,
                set,
            })
            .collect();
        detector.detect_batch(&items).expect("detect");
        let runs = 3;
        let start = Instant::now();
        for _ in 0..runs {
            detector.detect_batch(&items).expect("detect");
        }
        let per_image = start.elapsed().as_secs_f64() * 1000.0 / (runs * n) as f64;
        println!("batch {n}: {per_image:.1} ms per image");
    }
}
