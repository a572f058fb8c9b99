//! `hoiclip serve` and `hoiclip warm-up`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::{EngineArgs, ModelArgs, defaults, runtime};
use hoiclip::api::server::ServerLimits;
use hoiclip::api::{ApiKeys, RateLimit, ServeOptions};
use hoiclip::config::Settings;
use hoiclip::vision::DecodeLimits;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HOICLIP_LISTEN", default_value_t = defaults().listen)]
    listen: String,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
    /// API key required by POST /detect (header X-API-Key or Authorization: Bearer).
    /// Prefer HOICLIP_API_KEY or --api-key-file: a flag shows in `ps`. Several keys:
    /// comma-separated.
    #[arg(
        long,
        env = "HOICLIP_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    api_key: Vec<String>,
    /// File with detection API keys, one per line (`#` starts a comment).
    #[arg(long, env = "HOICLIP_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// API key required by vocabulary writes (also accepted by /detect).
    #[arg(
        long,
        env = "HOICLIP_ADMIN_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    admin_key: Vec<String>,
    /// File with admin keys, one per line.
    #[arg(long, env = "HOICLIP_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
    /// Requests per second per API key (per client address where no key is needed);
    /// 0 turns rate limiting off.
    #[arg(long, env = "HOICLIP_RATE_LIMIT", default_value_t = defaults().api.rate_limit.per_second)]
    rate_limit: u32,
    /// Requests a key may send at once above the sustained rate.
    #[arg(long, env = "HOICLIP_RATE_LIMIT_BURST", default_value_t = defaults().api.rate_limit.burst)]
    rate_limit_burst: u32,
    /// Seconds to receive a request's headers; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "HOICLIP_HEADER_TIMEOUT", default_value_t = defaults().server.header_timeout.as_secs())]
    header_timeout: u64,
    /// Seconds to receive a whole request body (slower uploads get 408).
    #[arg(long, env = "HOICLIP_BODY_TIMEOUT", default_value_t = defaults().api.body_timeout.as_secs())]
    body_timeout: u64,
    /// Open connections at most (lowered to fit the descriptor limit); more get 503.
    #[arg(long, env = "HOICLIP_MAX_CONNECTIONS", default_value_t = defaults().server.max_connections)]
    max_connections: usize,
    /// Seconds a response write may wait for a client that does not read; then the
    /// connection is closed.
    #[arg(long, env = "HOICLIP_SEND_TIMEOUT", default_value_t = defaults().server.send_timeout.as_secs())]
    send_timeout: u64,
    /// Open connections from one client address at most; 0: no per-client limit (behind
    /// a proxy, where every client has the proxy's address).
    #[arg(
        long,
        env = "HOICLIP_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = defaults().server.max_connections_per_client
    )]
    max_connections_per_client: usize,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "HOICLIP_SHUTDOWN_GRACE", default_value_t = defaults().server.shutdown_grace.as_secs())]
    shutdown_grace: u64,
    /// Decoded pixels in memory at once across all requests (about 3-8 bytes each);
    /// further decodes wait. Never below --max-pixels.
    #[arg(
        long,
        env = "HOICLIP_DECODE_BUDGET_PIXELS",
        default_value_t = defaults().api.decode_budget_pixels
    )]
    decode_budget_pixels: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HOICLIP_MAX_BODY_BYTES", default_value_t = defaults().api.max_body_bytes)]
    max_body_bytes: usize,
    /// Largest accepted image, in decoded pixels.
    #[arg(long, env = "HOICLIP_MAX_PIXELS", default_value_t = defaults().api.decode.max_pixels)]
    max_pixels: u64,
    /// Per-request time limit in seconds: a detection not answered by then gets 503
    /// `timeout` (and is dropped from the queue if it has not run yet).
    #[arg(long, env = "HOICLIP_REQUEST_TIMEOUT", default_value_t = defaults().api.request_timeout.as_secs())]
    request_timeout: u64,
    /// Allow cross-origin requests from any origin.
    #[arg(long, env = "HOICLIP_CORS")]
    cors: bool,
    /// Milliseconds between checks of the stored vocabulary version for changes made
    /// elsewhere (other replicas, the CLI); on Postgres the fallback behind LISTEN/NOTIFY.
    #[arg(long, env = "HOICLIP_VOCABULARY_POLL_MS", default_value_t = defaults().vocabulary_poll.as_millis() as u64)]
    vocabulary_poll_ms: u64,
    /// Longest a detection waits, in milliseconds, for the vocabulary version it asks for
    /// (`min_vocabulary_version`) before answering 503 `stale-vocabulary`.
    #[arg(long, env = "HOICLIP_VOCABULARY_WAIT_MS", default_value_t = defaults().api.vocabulary_wait.as_millis() as u64)]
    vocabulary_wait_ms: u64,
}

impl ServeArgs {
    /// The flags as settings (keys read from their files).
    fn settings(&self) -> anyhow::Result<Settings> {
        let base = self.model.settings(&self.engine);
        Ok(Settings {
            listen: self.listen.clone(),
            api: ServeOptions {
                keys: ApiKeys {
                    detect: read_keys(&self.api_key, self.api_key_file.as_ref())?,
                    admin: read_keys(&self.admin_key, self.admin_key_file.as_ref())?,
                },
                max_body_bytes: self.max_body_bytes,
                decode: DecodeLimits {
                    max_pixels: self.max_pixels,
                    ..base.api.decode
                },
                request_timeout: Duration::from_secs(self.request_timeout),
                body_timeout: Duration::from_secs(self.body_timeout),
                decode_budget_pixels: self.decode_budget_pixels,
                rate_limit: RateLimit {
                    per_second: self.rate_limit,
                    burst: self.rate_limit_burst,
                },
                cors: self.cors,
                vocabulary_wait: Duration::from_millis(self.vocabulary_wait_ms),
            },
            vocabulary_poll: Duration::from_millis(self.vocabulary_poll_ms),
            server: ServerLimits {
                header_timeout: Duration::from_secs(self.header_timeout),
                max_connections: self.max_connections,
                shutdown_grace: Duration::from_secs(self.shutdown_grace),
                send_timeout: Duration::from_secs(self.send_timeout),
                max_connections_per_client: self.max_connections_per_client,
            },
            ..base
        })
    }
}

/// Keys from flags or the environment plus those in `file` (one per line, `#` comments).
fn read_keys(given: &[String], file: Option<&PathBuf>) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = given
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    // A key setting given but blank (`HOICLIP_ADMIN_KEY=" "`) would silently leave the
    // API open: refuse to start instead.
    if !given.is_empty() && keys.is_empty() {
        anyhow::bail!("an API key setting is present but holds no key (only blanks or commas)");
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read key file {}", path.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
        if keys.is_empty() {
            anyhow::bail!("key file {} holds no key", path.display());
        }
    }
    Ok(keys)
}

/// Ctrl-C or SIGTERM: stop accepting, finish the requests in flight.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    runtime()?.block_on(hoiclip::app::serve(&settings, shutdown_signal()))?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct WarmUpArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    engine: EngineArgs,
}

/// `hoiclip warm-up`: builds the server as `serve` does (its warm-up included) and
/// reports what ran.
pub fn warm_up(args: WarmUpArgs) -> anyhow::Result<()> {
    let settings = &args.model.settings(&args.engine);
    let started = std::time::Instant::now();
    let app = runtime()?.block_on(hoiclip::app::build(settings))?;
    println!(
        "{}",
        serde_json::json!({
            "device": app.service().device(),
            "shapes": app.warm_up.len(),
            "seconds_to_ready": started.elapsed().as_secs_f64(),
            "kernel_cache": settings.kernel_cache,
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::read_keys;

    #[test]
    fn keys_come_from_flags_and_a_file_with_comments() {
        let path = std::env::temp_dir().join(format!("hoiclip-keys-{}", std::process::id()));
        std::fs::write(&path, "# rotated 2026-11\nkey-b\n\n  key-c  \n").unwrap();
        let keys = read_keys(&["key-a".into(), " ".into()], Some(&path)).unwrap();
        assert_eq!(keys, ["key-a", "key-b", "key-c"]);
        assert!(
            read_keys(&[" ".into(), "".into()], None).is_err(),
            "blank keys must not open the API"
        );
        assert!(read_keys(&[], None).unwrap().is_empty());
        std::fs::write(&path, "# nothing here\n").unwrap();
        assert!(
            read_keys(&[], Some(&path)).is_err(),
            "an empty key file must not open the API"
        );
        let missing = path.with_extension("missing");
        assert!(read_keys(&[], Some(&missing)).is_err());
        let _ = std::fs::remove_file(path);
    }
}
