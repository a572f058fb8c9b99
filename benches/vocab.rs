//! Vocabulary rebuilds with the full-size CLIP text tower (ViT-B/32's: 12 x 512, random
//! weights) on the default CPU backend:
//! - cold: seed HICO-DET and build the first classifier set (every prompt embedded);
//! - add: register one interaction and have the new set live (median of 5);
//! - warm restart: a new process on the same database (every prompt cached).
//!
//!     cargo bench --bench vocab

use std::sync::Arc;
use std::time::Instant;

use hoiclip::backend::Cpu;
use hoiclip::classifier::ClassifierService;
use hoiclip::model::clip::ClipConfig;
use hoiclip::model::clip::tokenizer::ClipTokenizer;
use hoiclip::vocab::Pack;
use hoiclip::vocab::store::VocabStore;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let dir = std::env::temp_dir().join(format!("hoiclip-bench-vocab-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let url = format!("sqlite://{}/v.db", dir.display());
        let device = Default::default();
        let clip = ClipConfig::vit_b_32().init::<Cpu>(&device);
        let tokenizer = Arc::new(ClipTokenizer::new().expect("tokenizer"));

        let start = Instant::now();
        let store = VocabStore::open(&url, tokenizer.clone()).await.expect("store");
        store.seed(&Pack::hico_det()).await.expect("seed");
        let service = ClassifierService::<Cpu>::new(store.clone(), tokenizer.clone(), &clip, None, &device);
        let set = service.refresh(&clip).await.expect("build");
        let cold = start.elapsed().as_secs_f64() * 1000.0;
        let (_, embedded) = service.text_passes();

        store
            .add_verb(hoiclip::vocab::store::NewVerb { name: "toss".into(), ing: "tossing".into(), ..Default::default() })
            .await
            .expect("verb");
        service.refresh(&clip).await.expect("refresh");
        let mut adds = Vec::new();
        for object in ["apple", "orange", "banana", "kite", "cup"] {
            let start = Instant::now();
            store.add_interaction("toss", object, None, None).await.expect("add");
            let live = service.refresh(&clip).await.expect("refresh");
            adds.push(start.elapsed().as_secs_f64() * 1000.0);
            assert!(live.rows.iter().any(|r| r.object == object && r.verb == "toss"));
        }
        adds.sort_by(|a, b| a.total_cmp(b));
        drop(service);

        let start = Instant::now();
        let store = VocabStore::open(&url, tokenizer.clone()).await.expect("store");
        store.seed(&Pack::hico_det()).await.expect("seed");
        let service = ClassifierService::<Cpu>::new(store, tokenizer, &clip, None, &device);
        let warm_set = service.refresh(&clip).await.expect("warm");
        let warm = start.elapsed().as_secs_f64() * 1000.0;
        println!(
            "{}",
            serde_json::json!({
                "impl": format!("burn-{}", hoiclip::backend::cpu_backend_name()),
                "cold_build_ms": cold, "cold_prompts_embedded": embedded, "classes": set.rows.len(),
                "add_interaction_live_ms_median": adds[adds.len() / 2], "add_ms_all": adds,
                "warm_restart_ms": warm, "warm_text_passes": service.text_passes().0, "warm_classes": warm_set.rows.len(),
            })
        );
        std::fs::remove_dir_all(&dir).ok();
    });
}
