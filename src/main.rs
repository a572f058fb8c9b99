//! The `hoiclip` command line (the commands are in `cli/`).

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = cli::Cli::parse();
    // Before the runtime, the engine or rayon start any thread (see the function).
    if !cli.release_freed_memory && !hoiclip::backend::keep_freed_memory() {
        tracing::debug!("the C library is not glibc: freed memory is handled its own way");
    }
    if !cli.serves() {
        quiet_broken_pipe();
    }
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A command line tool piped into `head` should stop quietly when the reader goes away,
/// as Unix tools do, instead of panicking on the failed write. Rust ignores SIGPIPE; the
/// printing commands take the default action back. The server keeps ignoring it (a client
/// closing its socket must never stop it).
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread is spawned; it only resets the
    // disposition of one signal to its default.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
