//! Vocabulary rebuilds with the full-size CLIP text tower (ViT-B/32's: 12 x 512, random
//! weights) on the default CPU backend, the server built as `hoiclip serve` builds it:
//! - cold: a fresh database, both seed packs, the first classifier set (every prompt
//!   embedded on the engine's worker);
//! - add: register one interaction and have the new set live (median of 5);
//! - warm restart: a new service on the same database (every prompt cached).
//!
//! Start times include building the random full-size model (`model_init_ms`, measured
//! alone first).
//!
//!     cargo bench --bench vocab

use std::time::Instant;

use hoiclip::backend::Cpu;
use hoiclip::config::{ModelSource, Settings};
use hoiclip::detector::Detector;
use hoiclip::model::hoiclip::HoiclipConfig;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = std::env::temp_dir().join(format!("hoiclip-bench-vocab-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = Settings {
            model: ModelSource::Random(Box::new(HoiclipConfig::hico_det())),
            database_url: format!("sqlite://{}/v.db", dir.display()),
            ..Settings::default()
        };
        let start = Instant::now();
        drop(Detector::<Cpu>::random(HoiclipConfig::hico_det(), &Default::default()).expect("model"));
        let model_init = start.elapsed().as_secs_f64() * 1000.0;
        let name = hoiclip::backend::cpu_backend_name();
        let start_service = || hoiclip::app::service_on::<Cpu, _, _>(&settings, Default::default(), "cpu", name, |r| r);

        let start = Instant::now();
        let service = start_service().await.expect("service");
        let cold = start.elapsed().as_secs_f64() * 1000.0;
        let (passes, embedded) = service.classifiers().text_passes();
        let classes = service.classes().expect("set").rows.len();

        let store = service.store().clone();
        store
            .add_verb(hoiclip::vocab::store::NewVerb { name: "toss".into(), ing: "tossing".into(), ..Default::default() })
            .await
            .expect("verb");
        service.refresh().await.expect("refresh");
        let mut adds = Vec::new();
        for object in ["apple", "orange", "banana", "kite", "cup"] {
            let start = Instant::now();
            store.add_interaction("toss", object, None, None).await.expect("add");
            let live = service.refresh().await.expect("refresh");
            adds.push(start.elapsed().as_secs_f64() * 1000.0);
            assert!(live.rows.iter().any(|r| r.object == object && r.verb == "toss"));
        }
        adds.sort_by(|a, b| a.total_cmp(b));
        drop(service);

        let start = Instant::now();
        let service = start_service().await.expect("service");
        let warm = start.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{}",
            serde_json::json!({
                "impl": format!("burn-{name}"),
                "model_init_ms": model_init,
                "cold_start_ms": cold, "cold_text_passes": passes, "cold_prompts_embedded": embedded, "classes": classes,
                "add_interaction_live_ms_median": adds[adds.len() / 2], "add_ms_all": adds,
                "warm_start_ms": warm, "warm_text_passes": service.classifiers().text_passes().0,
                "warm_classes": service.classes().expect("set").rows.len(),
            })
        );
        std::fs::remove_dir_all(&dir).ok();
    });
}
