//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod http;

use std::path::PathBuf;

use burn::prelude::*;
use hoiclip::model::weights::Checkpoint;

pub type B = hoiclip::backend::Cpu;

pub fn fixture(path: &str) -> PathBuf {
    // Cargo sets CARGO_MANIFEST_DIR when it runs a test; a test binary run on its own
    // (benches/gpu.sh carries prebuilt ones to the GPU machine) is pointed at the tree
    // with the same variable, else it falls back to where it was built.
    let root = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    root.join("tests/fixtures").join(path)
}

/// Reads one reference tensor written by a fixture script.
pub fn reference<const D: usize>(file: &Checkpoint, key: &str) -> Tensor<B, D> {
    let data = file.data(key).expect("reference tensor");
    Tensor::from_data(data, &Default::default())
}

/// Largest absolute elementwise difference.
pub fn max_abs_diff<const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b).abs().max().into_scalar()
}

/// A PNG whose header claims `w x h` (valid CRCs) with almost no pixel data: a
/// decompression bomb that must be refused from its header alone.
pub fn png_claiming(w: u32, h: u32) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    bytes.extend_from_slice(&13u32.to_be_bytes());
    bytes.extend_from_slice(&ihdr);
    bytes.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
    for (kind, data) in [
        (&b"IDAT"[..], &[0x78u8, 0x9c, 0x03, 0x00][..]),
        (&b"IEND"[..], &[][..]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&chunk);
        bytes.extend_from_slice(&crc32fast::hash(&chunk).to_be_bytes());
    }
    bytes
}

/// A gate batches wait at while it is closed.
#[derive(Clone)]
pub struct Gate(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Gate {
    pub fn closed() -> Self {
        Self(std::sync::Arc::new((
            std::sync::Mutex::new(true),
            std::sync::Condvar::new(),
        )))
    }

    pub fn open(&self) {
        if let Ok(mut closed) = self.0.0.lock() {
            *closed = false;
        }
        self.0.1.notify_all();
    }

    /// Closes the gate again: from now on, whatever waits at it stops until it opens.
    pub fn close(&self) {
        if let Ok(mut closed) = self.0.0.lock() {
            *closed = true;
        }
    }

    pub fn pass(&self) {
        let Ok(mut closed) = self.0.0.lock() else {
            return;
        };
        while *closed {
            match self.0.1.wait(closed) {
                Ok(guard) => closed = guard,
                Err(_) => return,
            }
        }
    }
}

/// A runner that reports each batch it starts and then waits at the gate: lets tests
/// fill the queue deterministically. Text passes and set builds go straight through.
pub struct Held<R> {
    pub inner: R,
    pub gate: Gate,
    pub started: std::sync::mpsc::Sender<usize>,
}

impl<R: hoiclip::engine::Runner> hoiclip::engine::Runner for Held<R> {
    fn run(
        &mut self,
        batch: &[hoiclip::engine::Request],
    ) -> Vec<Result<hoiclip::detector::ImageDetections, hoiclip::engine::EngineError>> {
        let _ = self.started.send(batch.len());
        self.gate.pass();
        self.inner.run(batch)
    }

    fn embed_text(
        &mut self,
        ids: &[Vec<u32>],
    ) -> Result<Vec<Vec<f32>>, hoiclip::engine::EngineError> {
        self.inner.embed_text(ids)
    }

    fn install(
        &mut self,
        source: hoiclip::engine::SetSource,
    ) -> Result<hoiclip::engine::ClassifierHandle, hoiclip::classifier::ClassifierError> {
        self.inner.install(source)
    }

    fn embed_images(
        &mut self,
        crops: &[Vec<f32>],
    ) -> Result<Vec<Vec<f32>>, hoiclip::engine::EngineError> {
        self.inner.embed_images(crops)
    }
}

/// The server's settings with its vocabulary in the database at `url` (demo model, CPU).
pub fn settings_at(url: &str) -> hoiclip::config::Settings {
    hoiclip::config::Settings {
        database_url: url.into(),
        ..Default::default()
    }
}

/// The demo model (seeded weights: every copy is the same model), for direct calls beside
/// a service whose own copy lives on its worker.
pub fn demo_detector() -> hoiclip::detector::Detector<B> {
    hoiclip::detector::Detector::<B>::demo(&Default::default()).unwrap()
}

/// The demo model's service as `hoiclip serve` builds it, with a fresh in-memory
/// vocabulary and its first classifier set built.
pub async fn demo_service() -> std::sync::Arc<hoiclip::engine::Service> {
    demo_service_at(&test_db("demo")).await
}

/// As [`demo_service`], with the vocabulary in the database at `url`.
pub async fn demo_service_at(url: &str) -> std::sync::Arc<hoiclip::engine::Service> {
    demo_service_with(&settings_at(url), |runner| runner).await
}

/// As [`demo_service`], from `settings`, with the worker's runner wrapped by `wrap`.
pub async fn demo_service_with<R, W>(
    settings: &hoiclip::config::Settings,
    wrap: W,
) -> std::sync::Arc<hoiclip::engine::Service>
where
    R: hoiclip::engine::Runner,
    W: FnOnce(hoiclip::engine::DetectorRunner<B>) -> R + Send + 'static,
{
    hoiclip::app::service_on::<B, _, _>(settings, Default::default(), "cpu", "flex", wrap)
        .await
        .unwrap()
}

/// As [`demo_service_at`], with a handle on the sets its worker scores with (the
/// tensors stay on the worker; tests read them to compare with direct calls).
pub async fn demo_service_and_sets(
    url: &str,
) -> (
    std::sync::Arc<hoiclip::engine::Service>,
    hoiclip::engine::ClassifierSets<B>,
) {
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let service = demo_service_with(&settings_at(url), {
        let slot = slot.clone();
        move |runner| {
            *slot.lock().unwrap() = Some(runner.registry().clone());
            runner
        }
    })
    .await;
    // The runner is made before the first classifier set is built through it.
    let registry = slot.lock().unwrap().take().expect("the runner was made");
    (service, registry)
}

/// The Postgres server the vocabulary and API tests also run against (an admin URL, as
/// `.ci/postgres.sh start` prints); unset, they use SQLite only.
pub const POSTGRES_ENV: &str = "HOICLIP_TEST_POSTGRES_URL";

/// A fresh, empty Postgres database on the server of [`POSTGRES_ENV`], when it is set.
/// Created on a thread of its own so that sync and async tests can both call it.
pub fn fresh_postgres(name: &str) -> Option<String> {
    let admin = std::env::var(POSTGRES_ENV).ok().filter(|u| !u.is_empty())?;
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    let db = format!("t_{}_{n}_{nanos}_{clean}", std::process::id());
    let url = admin
        .rsplit_once('/')
        .map(|(base, _)| format!("{base}/{db}"))
        .unwrap();
    let create = format!("CREATE DATABASE {db}");
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                use sqlx::{Connection, Executor};
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                conn.execute(sqlx::AssertSqlSafe(create)).await.unwrap();
                conn.close().await.unwrap();
            })
    })
    .join()
    .unwrap();
    Some(url)
}

/// A fresh vocabulary database for one test: in-memory SQLite, or a new Postgres
/// database when [`POSTGRES_ENV`] is set (the CI runs the vocabulary and API suites both
/// ways).
pub fn test_db(name: &str) -> String {
    fresh_postgres(name).unwrap_or_else(|| "sqlite::memory:".into())
}

/// A fresh SQLite file URL under the system temp dir (removed with its WAL files first),
/// or a new Postgres database when [`POSTGRES_ENV`] is set.
pub fn temp_db(name: &str) -> String {
    fresh_postgres(name).unwrap_or_else(|| sqlite_file_db(name))
}

/// A fresh SQLite file URL under the system temp dir (removed with its WAL files first).
pub fn sqlite_file_db(name: &str) -> String {
    let path = std::env::temp_dir().join(format!("hoiclip-test-{}-{name}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    format!("sqlite://{}", path.display())
}
