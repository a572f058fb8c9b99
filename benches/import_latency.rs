//! Detection latency while a vocabulary pack imports, against idle: the real server on
//! loopback, one client sending `POST /detect` back to back, while another imports a pack
//! of 600 new interactions (20 new verbs x 30 new objects: 650 prompts through the text
//! tower). The engine's worker runs the import's text between detections, so the goal is
//! that p99 grows by at most one text batch (a rebuild's `TEXT_BATCH` prompts, timed alone).
//! Detections score the HICO-DET classes only (`pack=hico-det`), so the work per request
//! stays the same while the imports add classes.
//!
//!     cargo bench --bench import_latency              # demo config
//!     cargo bench --bench import_latency -- --full    # full-size (random weights)

use std::time::Instant;

use hoiclip::engine::{TEXT_BATCH, TEXT_SLICE};
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use tokio::io::BufReader;
use tokio::net::TcpStream;

mod common;
use common::{listen, percentile, random_model_settings, request, test_image};

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(full));
}

async fn run(full: bool) {
    let settings = random_model_settings(full);
    let app = hoiclip::app::build(&settings).await.expect("server");
    let service = app.service().clone();
    let addr = listen(&app).await;

    // One text pass alone (median of 5) over TEXT_BATCH of the longest prompts a pack
    // sends (a pack that is never imported): the cost of the passes the imports run.
    let tokenizer = ClipTokenizer::new().expect("tokenizer");
    let mut ids: Vec<Vec<u32>> = interaction_prompts(IMPORTS)
        .iter()
        .map(|p| tokenizer.encode(p).expect("tokens"))
        .collect();
    ids.sort_by_key(|t| std::cmp::Reverse(t.len()));
    ids.truncate(TEXT_BATCH);
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
    detect(&mut client, &image).await;
    let mut idle = Vec::new();
    for _ in 0..samples {
        idle.push(detect(&mut client, &image).await);
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
        let latency = detect(&mut client, &image).await;
        // Only requests that overlapped the imports count.
        if !import.is_finished() {
            during.push(latency);
        }
    }
    let imports = import.await.expect("imports");
    let import_ms = imports.iter().sum::<f64>() / imports.len() as f64;
    idle.sort_by(f64::total_cmp);
    during.sort_by(f64::total_cmp);
    let (i50, i99) = (percentile(&idle, 0.5), percentile(&idle, 0.99));
    let (d50, d99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    println!(
        "config {}, {} CPU backend, 640x480 JPEG, pack of 600 interactions (650 prompts)",
        if full { "full-size" } else { "demo" },
        hoiclip::backend::cpu_backend_name()
    );
    println!(
        "text batch ({TEXT_BATCH} prompts, run as passes of {TEXT_SLICE}) alone: {text_pass:.1} ms; each of {IMPORTS} imports took {import_ms:.0} ms on average"
    );
    println!("phase          requests  p50 ms  p99 ms");
    println!("idle           {:>8}  {i50:>6.1}  {i99:>6.1}", idle.len());
    println!("during import  {:>8}  {d50:>6.1}  {d99:>6.1}", during.len());
    println!(
        "p99 growth {:+.1} ms = {:.2} text batches (goal: <= 1)",
        d99 - i99,
        (d99 - i99) / text_pass
    );
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1000.0
}

/// One detection (scored against the HICO-DET classes only, so the work per request stays
/// the same while the imports add classes); its latency in ms.
async fn detect(client: &mut BufReader<TcpStream>, image: &[u8]) -> f64 {
    let start = Instant::now();
    let status = request(client, "POST", DETECT, "image/jpeg", image).await;
    assert_eq!(status, 200, "a detection failed");
    ms(start)
}

const DETECT: &str = "/detect?top_k=20&pack=hico-det";

const IMPORTS: usize = 3;

/// The interaction prompts of pack `round`, verb-major.
fn interaction_prompts(round: usize) -> Vec<String> {
    (0..20)
        .flat_map(|v| {
            (0..30)
                .map(move |o| format!("a photo of a person probing{round}x{v} a gadget{round}x{o}"))
        })
        .collect()
}

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
    let prompts = interaction_prompts(round);
    for v in 0..20 {
        for o in 0..30 {
            interactions.push(serde_json::json!({
                "verb": verb(v),
                "object": object(o),
                "prompt": prompts[v * 30 + o],
            }));
        }
    }
    serde_json::to_vec(&serde_json::json!({
        "name": format!("bench-import-{round}"), "verbs": verbs, "objects": objects, "interactions": interactions,
    }))
    .expect("json")
}
