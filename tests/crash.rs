//! The real binary killed with SIGKILL in the middle of concurrent vocabulary writes, twice:
//! every acknowledged write is there after a restart, the database passes SQLite's
//! integrity check, and the server starts on it. Also: logs written to a file carry no
//! terminal colour codes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with `connection: close`; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )?;
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

fn start(port: u16, db: &str, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            db,
            "--rate-limit",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(180) {
        if let Ok((200, _)) = http(port, "GET", "/health/ready", "") {
            return child;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server not ready after 180 s");
}

#[test]
fn acknowledged_writes_survive_kill_9_and_the_database_stays_sound() {
    let db = common::sqlite_file_db("kill9");
    let log = std::env::temp_dir().join(format!("hoiclip-test-{}-kill9.log", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    for round in 0..2 {
        let port = free_port();
        let mut server = start(port, &db, &log);
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let acknowledged = acknowledged.clone();
                std::thread::spawn(move || {
                    for n in 0.. {
                        let name = format!("r{round}w{w}n{n}");
                        match http(
                            port,
                            "POST",
                            "/objects",
                            &format!("{{\"name\": \"{name}\"}}"),
                        ) {
                            Ok((201, _)) => acknowledged.lock().unwrap().push(name),
                            Ok((status, body)) => {
                                assert!(status != 500, "a write failed with 500: {body}");
                            }
                            Err(_) => return, // the server is gone
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        server.kill().unwrap(); // SIGKILL
        server.wait().unwrap();
        for w in writers {
            w.join().unwrap();
        }
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 4,
        "too few writes to prove anything: {}",
        acknowledged.len()
    );

    let port = free_port();
    let mut server = start(port, &db, &log);
    let (status, body) = http(port, "GET", "/objects", "").unwrap();
    assert_eq!(status, 200);
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap().to_string())
        .collect();
    for name in &acknowledged {
        assert!(names.contains(name), "acknowledged write `{name}` was lost");
    }
    server.kill().unwrap();
    server.wait().unwrap();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let check: String = runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&db).await.unwrap();
        sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&pool)
            .await
            .unwrap()
    });
    assert_eq!(check, "ok");

    let log_text = std::fs::read(&log).unwrap();
    assert!(!log_text.is_empty());
    assert!(
        !log_text.contains(&0x1b),
        "the log file holds terminal colour codes"
    );
}

#[test]
fn cli_output_into_a_closed_pipe_stops_quietly() {
    use std::io::BufRead;
    let db = common::temp_db("pipe");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hoiclip"))
        .args(["vocab", "--database-url", &db, "list", "interactions"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe, as `| head -1` does.
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"prompt\""), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
