//! The Prometheus exposition against Debian's real `prometheus` package (scripts/setup installs
//! it): `promtool check metrics` passes on the endpoint's output and on the textfile, and a real
//! Prometheus on loopback scrapes the daemon, answering for a series through its HTTP query API.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fake_systemd, unit_changed, RunningDaemon};

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET target` on 127.0.0.1:port with `accept`; the status line and the body.
fn http_get(port: u16, target: &str, accept: &str) -> (String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: scripts/setup installs Debian's prometheus package"
    );
    path
}

/// `promtool check metrics` on `text`; its verdict and what it said.
fn promtool_check(text: &str) -> (bool, String) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A real Prometheus, stopped when dropped.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The value of the first series `query` returns, once Prometheus has one (up to 60 s).
fn query_until_present(port: u16, query: &str) -> f64 {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (status, body) = http_get(
                port,
                &format!("/api/v1/query?query={encoded}"),
                "application/json",
            );
            if status.contains("200") {
                let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
                if let Some(value) = answer["data"]["result"][0]["value"][1].as_str() {
                    return value.parse().unwrap();
                }
            }
            last = format!("{status} {body}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("Prometheus had no series for {query} within 60 s; last answer: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_metrics_and_a_real_prometheus_scrapes_them() {
    let promtool = tool("promtool");
    let prometheus = tool("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let textfile = dir.path().join("textfile/anomalyd.prom");
    std::fs::create_dir_all(textfile.parent().unwrap()).unwrap();
    let daemon = RunningDaemon::start(
        dir.path(),
        &format!(
            "[detector]\nwarmup_events = 4\n[metrics]\nlisten = \"127.0.0.1:{port}\"\ntextfile = \"{}\"\ntextfile_interval_s = 1\n",
            textfile.display()
        ),
    )
    .await;
    let systemd = fake_systemd(&daemon.bus).await;
    let units = 12;
    for i in 0..units {
        let path = format!("/org/freedesktop/systemd1/unit/metrics{i}_2eservice");
        unit_changed(&systemd, &path, "active", "running").await;
    }
    daemon
        .wait_for("the unit changes committed", |s| {
            s["RecordsWritten"] > units
        })
        .await;

    // The endpoint, in the classic text format, passes promtool's checks (its linter too).
    let (status, text) = http_get(port, "/metrics", "text/plain");
    assert!(status.contains("200"), "{status}\n{text}");
    let (ok, said) = promtool_check(&text);
    assert!(
        ok,
        "{promtool} check metrics refused the endpoint's output: {said}\n{text}"
    );
    assert!(
        text.contains(&format!(
            "anomalyd_events_total{{source=\"systemd\"}} {units}"
        )),
        "{text}"
    );
    assert!(
        text.contains("# TYPE anomalyd_commit_latency_seconds histogram"),
        "{text}"
    );
    // Asked for OpenMetrics (as Prometheus asks), it answers in it.
    let (status, openmetrics) = http_get(
        port,
        "/metrics",
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
    );
    assert!(
        status.contains("200") && openmetrics.ends_with("# EOF\n"),
        "{status}\n{openmetrics}"
    );

    // The textfile is rewritten every second; promtool accepts it too.
    let deadline = Instant::now() + Duration::from_secs(20);
    let written = loop {
        let written = std::fs::read_to_string(&textfile).unwrap_or_default();
        if written.contains(&format!(
            "anomalyd_events_total{{source=\"systemd\"}} {units}"
        )) {
            break written;
        }
        assert!(
            Instant::now() < deadline,
            "the textfile never held the counts: {written}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (ok, said) = promtool_check(&written);
    assert!(
        ok,
        "promtool check metrics refused the textfile: {said}\n{written}"
    );

    // A real Prometheus scrapes it and answers for a series.
    let web = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: anomalyd\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let (ok, said) = {
        let out = Command::new(&promtool)
            .args(["check", "config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert!(ok, "promtool check config: {said}");
    // The shipped alerting rules load.
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/prometheus/anomalyd.rules.yml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules {}: {}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _server = Prometheus(
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let scraped = tokio::task::spawn_blocking(move || {
        (
            query_until_present(web, "up{job=\"anomalyd\"} == 1"),
            query_until_present(
                web,
                "anomalyd_events_total{job=\"anomalyd\",source=\"systemd\"}",
            ),
            query_until_present(web, "anomalyd_build_info{job=\"anomalyd\"}"),
        )
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(scraped.0, 1.0, "the target is not up:\n{log}");
    assert_eq!(scraped.1, units as f64, "{log}");
    assert_eq!(scraped.2, 1.0, "{log}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_metrics_port_fails_the_start_naming_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let bus = anomalyd::bus::PrivateBus::spawn(&dir.path().join("bus")).unwrap();
    let config = common::test_config(
        &dir.path().join("state"),
        &bus,
        &format!("[metrics]\nlisten = \"{addr}\"\n"),
    );
    let error = anomalyd::daemon::run(config, &bus.target(), std::future::pending())
        .await
        .expect_err("the start must fail while the port is taken");
    let message = anomalyd::logging::error_chain(&error);
    assert!(
        message.contains("metrics.listen") && message.contains(&addr.to_string()),
        "{message}"
    );
}
