//! Time from `POST /verbs/{id}/examples` to the verb's learned row being live, for 1 and
//! 16 examples: the real server on loopback, full-size CLIP ViT-B/32 (random weights).
//! The answer comes after the rebuild, so the row is live when it arrives; the bench
//! checks that (the classifier in service has the answer's version and the verb's row
//! source is `examples`). Beside it: the image tower alone on the same number of crops
//! (one engine command), so the rest (decoding, cropping, storing, rebuilding) shows.
//!
//!     cargo bench --bench examples_latency              # full-size (random weights)
//!     cargo bench --bench examples_latency -- --demo    # demo config, quick

use std::time::Instant;

use base64::Engine;
use hoiclip::vision::preprocess::clip_crop;
use tokio::io::BufReader;
use tokio::net::TcpStream;

mod common;
use common::{listen, random_model_settings, request, test_image};

const RUNS: usize = 3;

fn main() {
    let demo = std::env::args().any(|a| a == "--demo");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(demo));
}

async fn run(demo: bool) {
    let settings = random_model_settings(!demo);
    let app = hoiclip::app::build(&settings).await.expect("server");
    let service = app.service().clone();
    let addr = listen(&app).await;
    let mut client = BufReader::new(TcpStream::connect(addr).await.expect("connect"));
    let image = test_image();
    let decoded = hoiclip::vision::decode(&image, Default::default()).expect("decode");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&image);

    println!(
        "model: {} ({}), CLIP input {}px, {} cores",
        service.info().name,
        if demo { "demo config" } else { "full size" },
        service.clip_resolution(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "examples | POST to live row, ms (median of {RUNS}) | image tower alone, ms | rest, ms | POST / tower"
    );
    for n in [1usize, 16] {
        let verb = format!("juggle{n}");
        let body = serde_json::json!({"name": verb, "ing": "juggling", "objects": ["orange"]});
        let status = request(
            &mut client,
            "POST",
            "/verbs",
            "application/json",
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(status, 201, "create verb");
        let id = service
            .store()
            .verbs()
            .await
            .expect("verbs")
            .into_iter()
            .find(|v| v.name == verb)
            .expect("the verb")
            .id;
        // n different pairs on the 640x480 image.
        let boxes: Vec<([f32; 4], [f32; 4])> = (0..n)
            .map(|k| {
                let x = (k * 30) as f32;
                (
                    [x, 20.0, x + 150.0, 460.0],
                    [x + 100.0, 40.0, x + 180.0, 120.0],
                )
            })
            .collect();
        let examples: Vec<serde_json::Value> = boxes
            .iter()
            .map(|(h, o)| serde_json::json!({"image": b64, "human_box": h, "object_box": o, "object": "orange"}))
            .collect();
        let body = serde_json::json!({ "examples": examples }).to_string();
        let mut posts = Vec::new();
        for run in 0..RUNS {
            let path = format!(
                "/verbs/{id}/examples{}",
                if run > 0 { "?replace=true" } else { "" }
            );
            let start = Instant::now();
            let status = request(
                &mut client,
                "POST",
                &path,
                "application/json",
                body.as_bytes(),
            )
            .await;
            posts.push(start.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(status, 201, "post examples");
            let set = service.classes().expect("a set");
            let version = service.store().version().await.expect("version");
            assert_eq!(
                set.version, version,
                "the row is live when the answer arrives"
            );
            assert_eq!(
                set.sources.verbs.get(&id),
                Some(&hoiclip::classifier::RowSource::Examples { examples: n })
            );
        }
        posts.sort_by(f64::total_cmp);
        let post = posts[RUNS / 2];

        let res = service.clip_resolution();
        let crops: Vec<Vec<f32>> = boxes
            .iter()
            .flat_map(|(h, o)| {
                let u = hoiclip::classifier::arithmetic::union_box(*h, *o);
                [*h, *o, u].map(|b| clip_crop(&decoded, b, res))
            })
            .collect();
        let mut towers = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            service
                .engine()
                .embed_images(crops.clone())
                .await
                .expect("image tower");
            towers.push(start.elapsed().as_secs_f64() * 1000.0);
        }
        towers.sort_by(f64::total_cmp);
        let tower = towers[RUNS / 2];
        println!(
            "{n:>8} | {post:>10.0} | {tower:>10.0} | {:>8.0} | {:>5.2}x",
            post - tower,
            post / tower
        );
    }
}
