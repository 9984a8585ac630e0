//! The D-Bus query API and `anomalyctl` against a daemon with a few hundred events, on a real
//! private dbus-daemon with the real model: every method through zbus, the read methods and
//! introspection through the real `busctl` and `gdbus`, the client end to end (including
//! `--follow` receiving a signal), and bad arguments answered with the right error while the
//! daemon stays healthy.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

use anomalyd::api::{ChainReport, Page, ScoreReply};
use anomalyd::emulate::replay::unit_path;
use common::{api_proxy, fake_systemd, read_rows, unit_changed, RunningDaemon};

const WARMUP: &str = "[detector]\nwarmup_events = 4\n";

/// The D-Bus error name of a failed call.
fn error_name(result: zbus::Result<impl std::fmt::Debug>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, message, _)) => {
            assert!(
                message.as_deref().is_some_and(|m| !m.is_empty()),
                "{name} carries a message"
            );
            name.to_string()
        }
        other => panic!("expected a D-Bus error, got {other:?}"),
    }
}

async fn blocking<A>(program: &'static str, args: Vec<A>) -> Output
where
    A: AsRef<std::ffi::OsStr> + Send + 'static,
{
    tokio::task::spawn_blocking(move || Command::new(program).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn text_of(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_answers_through_zbus_busctl_gdbus_and_anomalyctl() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), WARMUP).await;
    let address = daemon.bus.address().to_owned();
    let systemd = fake_systemd(&daemon.bus).await;
    // A few hundred normal events over two texts, then six distinct faults.
    let nginx = unit_path("nginx.service");
    for _ in 0..150 {
        unit_changed(&systemd, &nginx, "active", "running").await;
        unit_changed(&systemd, &nginx, "inactive", "dead").await;
    }
    let faults = [
        "postgresql.service",
        "redis-server.service",
        "cron.service",
        "ssh.service",
        "chrony.service",
        "rsyslog.service",
    ];
    for unit in faults {
        unit_changed(&systemd, &unit_path(unit), "failed", "failed").await;
    }
    daemon
        .wait_for("306 events", |s| s["RecordsWritten"] >= 307)
        .await;
    let conn = daemon.conn.clone();
    let api = api_proxy(&conn).await;
    let rows = read_rows(&daemon.db());
    let anomalies: Vec<_> = rows.iter().filter(|r| r.verdict == "anomaly").collect();
    assert_eq!(anomalies.len(), faults.len(), "each fault is an anomaly");

    // ---- ListAnomalies pages through a cursor, continued with ListEvents.
    let Page {
        rows: first,
        cursor,
    } = api.call("ListAnomalies", &(0u64, 4i32)).await.unwrap();
    assert_eq!(first.len(), 4);
    assert_eq!(
        cursor, first[3].seq,
        "the cursor is the last seq when more follow"
    );
    let rest: Page = api
        .call(
            "ListEvents",
            &(
                0u64,
                4i32,
                HashMap::from([
                    ("verdict", Value::from("anomaly")),
                    ("after_seq", Value::U64(cursor)),
                ]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(rest.cursor, 0, "the last page has no cursor");
    let listed: Vec<u64> = first.iter().chain(&rest.rows).map(|r| r.seq).collect();
    let expected: Vec<u64> = anomalies.iter().map(|r| r.seq).collect();
    assert_eq!(listed, expected);
    let row = &first[0];
    let stored = anomalies[0];
    assert_eq!(
        (
            row.usec,
            row.kind.as_str(),
            row.source.as_str(),
            row.verdict.as_str(),
            row.text.as_str()
        ),
        (
            stored.ts_usec,
            "event",
            "systemd",
            "anomaly",
            stored.text.as_str()
        )
    );
    assert!((row.score - stored.score.unwrap()).abs() < 1e-9);

    // ---- ListEvents: everything, newest first, by text, by time.
    let all: Page = api
        .call(
            "ListEvents",
            &(0u64, 1000i32, HashMap::<&str, Value<'_>>::new()),
        )
        .await
        .unwrap();
    assert_eq!(all.rows.len(), rows.len());
    assert_eq!(all.cursor, 0);
    let newest: Page = api
        .call(
            "ListEvents",
            &(
                0u64,
                3i32,
                HashMap::from([("newest_first", Value::Bool(true))]),
            ),
        )
        .await
        .unwrap();
    let last3: Vec<u64> = rows.iter().rev().take(3).map(|r| r.seq).collect();
    assert_eq!(newest.rows.iter().map(|r| r.seq).collect::<Vec<_>>(), last3);
    let postgres: Page = api
        .call(
            "ListEvents",
            &(
                0u64,
                10i32,
                HashMap::from([("contains", Value::from("postgresql"))]),
            ),
        )
        .await
        .unwrap();
    assert_eq!(postgres.rows.len(), 1);
    assert!(postgres.rows[0].text.contains("postgresql.service"));
    let since = anomalies[2].ts_usec;
    let recent: Page = api.call("ListAnomalies", &(since, 100i32)).await.unwrap();
    assert!(recent.rows.iter().all(|r| r.usec >= since));
    assert!(recent.rows.len() >= 4 && recent.rows.len() < faults.len() + 1);

    // ---- Bad listings.
    for limit in [-1i32, 0, 1001, i32::MAX] {
        let answer: zbus::Result<Page> = api.call("ListAnomalies", &(0u64, limit)).await;
        assert_eq!(
            error_name(answer),
            "org.anomalyd.Error.InvalidArgument",
            "limit {limit}"
        );
    }
    for filter in [
        HashMap::from([("bogus", Value::U64(1))]),
        HashMap::from([("verdict", Value::from("weird"))]),
        HashMap::from([("after_seq", Value::from("seven"))]),
    ] {
        let answer: zbus::Result<Page> = api.call("ListEvents", &(0u64, 10i32, &filter)).await;
        assert_eq!(error_name(answer), "org.anomalyd.Error.InvalidArgument");
    }

    // ---- GetEvent: every field, hashes as stored.
    let event: HashMap<String, OwnedValue> = api.call("GetEvent", &(stored.seq,)).await.unwrap();
    let text = |k: &str| String::try_from(event[k].try_clone().unwrap()).unwrap();
    assert_eq!(text("Text"), stored.text);
    assert_eq!(text("Verdict"), "anomaly");
    assert_eq!(text("Hash"), hex::encode(&stored.hash));
    assert_eq!(text("PrevHash"), hex::encode(&stored.prev_hash));
    assert_eq!(text("Model"), stored.model);
    assert_eq!(
        f64::try_from(&event["Score"]).unwrap(),
        stored.score.unwrap()
    );
    assert!(f64::try_from(&event["Threshold"]).unwrap() > 0.0);
    let answer: zbus::Result<HashMap<String, OwnedValue>> =
        api.call("GetEvent", &(999_999u64,)).await;
    assert_eq!(error_name(answer), "org.anomalyd.Error.NotFound");

    // ---- Score: a dry run records nothing.
    let head_before = daemon.stats().await["HeadSeq"];
    let normal_text = rows
        .iter()
        .find(|r| r.verdict == "normal")
        .unwrap()
        .text
        .clone();
    let ScoreReply {
        score,
        verdict,
        threshold,
        neighbours,
    } = api.call("Score", &(normal_text.as_str(),)).await.unwrap();
    assert_eq!(verdict, "normal");
    assert!(score < threshold, "{score} < {threshold}");
    assert_eq!(neighbours[0].text, normal_text);
    assert!(neighbours[0].count >= 100, "the count of a repeated text");
    let ScoreReply { score, verdict, .. } = api
        .call(
            "Score",
            &("systemd unit nfs-server.service ActiveState=failed SubState=failed Result=exit-code",),
        )
        .await
        .unwrap();
    assert_eq!(verdict, "anomaly", "score {score}");
    for bad in [String::new(), "x".repeat(10 * 1024 * 1024)] {
        let answer: zbus::Result<ScoreReply> = api.call("Score", &(bad.as_str(),)).await;
        assert_eq!(error_name(answer), "org.anomalyd.Error.InvalidArgument");
    }
    assert_eq!(
        daemon.stats().await["HeadSeq"],
        head_before,
        "Score wrote nothing"
    );

    // ---- Submit: judged and recorded like an observed event, with the caller, and answered
    // only once committed: the record is there the moment the call returns.
    let () = api
        .call(
            "Submit",
            &("custom", "disk sda1 SMART reallocated sectors 512"),
        )
        .await
        .unwrap();
    let submitted = read_rows(&daemon.db()).pop().unwrap();
    assert_eq!(
        submitted.text, "custom disk sda1 SMART reallocated sectors 512",
        "committed before Submit answered"
    );
    for (source, text) in [
        ("kernel", "anything"),
        ("custom", ""),
        ("custom", &"y".repeat(10 * 1024 * 1024)),
    ] {
        let answer: zbus::Result<()> = api.call("Submit", &(source, text)).await;
        assert_eq!(error_name(answer), "org.anomalyd.Error.InvalidArgument");
    }
    assert!(daemon.stats().await["HeadSeq"] > head_before);
    assert_eq!(submitted.source, "custom");
    assert_eq!(
        submitted.text,
        "custom disk sda1 SMART reallocated sectors 512"
    );
    assert_eq!(submitted.verdict, "anomaly");
    let fields: serde_json::Value = serde_json::from_str(&submitted.fields).unwrap();
    assert_eq!(fields["submitted_by_uid"], 0);

    // ---- Properties, and PropertiesChanged as they change.
    let props = zbus::fdo::PropertiesProxy::builder(&conn)
        .destination("org.anomalyd.Detector1")
        .unwrap()
        .path("/org/anomalyd/Detector1")
        .unwrap()
        .build()
        .await
        .unwrap();
    let interface = zbus::names::InterfaceName::from_static_str("org.anomalyd.Detector1").unwrap();
    let all_props = props.get_all(interface.clone()).await.unwrap();
    let number = |k: &str| u64::try_from(&all_props[k]).unwrap();
    assert!(number("EventsTotal") >= 307);
    assert_eq!(number("AnomaliesTotal"), daemon.stats().await["Anomalies"]);
    assert_eq!(number("DroppedTotal"), 0);
    assert_eq!(f64::try_from(&all_props["Threshold"]).unwrap(), 0.05);
    assert_eq!(i32::try_from(&all_props["NumaNode"]).unwrap(), -1);
    let cpus = String::try_from(all_props["CpuSet"].try_clone().unwrap()).unwrap();
    assert!(
        !cpus.is_empty()
            && cpus
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == ','),
        "a CPU list such as 0-1: {cpus:?}"
    );
    let mut changes = props.receive_properties_changed().await.unwrap();
    unit_changed(&systemd, &nginx, "active", "running").await;
    // A change published just before the subscription may still arrive first.
    let seen = number("EventsTotal");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let signal = changes.next().await.unwrap();
            let args = signal.args().unwrap();
            if let Some(total) = args.changed_properties().get("EventsTotal") {
                if u64::try_from(total).unwrap() > seen {
                    return;
                }
            }
        }
    })
    .await
    .expect("PropertiesChanged with the new EventsTotal within 10 s");

    // ---- busctl and gdbus, the real clients.
    let busctl = |args: &[&str]| {
        let mut all = vec![format!("--address={address}")];
        all.extend(args.iter().map(|s| s.to_string()));
        blocking("busctl", all)
    };
    const DEST: [&str; 3] = [
        "org.anomalyd.Detector1",
        "/org/anomalyd/Detector1",
        "org.anomalyd.Detector1",
    ];
    let out = busctl(&["introspect", DEST[0], DEST[1]]).await;
    let introspection = text_of(&out);
    assert!(out.status.success(), "{introspection}");
    for member in [
        "ListAnomalies",
        "ListEvents",
        "GetEvent",
        "Explain",
        "Score",
        "Submit",
        "MarkBenign",
        "Retrain",
        "VerifyChain",
        "Head",
        "Stats",
        "EventsTotal",
        "Threshold",
        "CpuSet",
        "AnomalyDetected",
    ] {
        assert!(
            introspection.contains(member),
            "{member} in {introspection}"
        );
    }
    let out = busctl(&[
        "--json=short",
        "call",
        DEST[0],
        DEST[1],
        DEST[2],
        "ListAnomalies",
        "ti",
        "0",
        "10",
    ])
    .await;
    assert!(out.status.success(), "{}", text_of(&out));
    let reply: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(reply["type"], "a(ttsssds)t");
    assert_eq!(
        reply["data"][0].as_array().unwrap().len(),
        anomalies.len() + 1,
        "the faults and the submitted event (the dry runs are not recorded): {reply}"
    );
    let seq = stored.seq.to_string();
    let out = busctl(&["call", DEST[0], DEST[1], DEST[2], "GetEvent", "t", &seq]).await;
    assert!(text_of(&out).contains(&stored.text), "{}", text_of(&out));
    let out = busctl(&["get-property", DEST[0], DEST[1], DEST[2], "AnomaliesTotal"]).await;
    assert!(text_of(&out).starts_with("t "), "{}", text_of(&out));
    let out = busctl(&[
        "call",
        "--",
        DEST[0],
        DEST[1],
        DEST[2],
        "ListAnomalies",
        "ti",
        "0",
        "-5",
    ])
    .await;
    assert!(!out.status.success());
    assert!(text_of(&out).contains("limit -5"), "{}", text_of(&out));

    // A text that is not UTF-8 never reaches the daemon: D-Bus strings are UTF-8 by definition,
    // so the client library refuses to send it (and the bus would refuse to route it).
    let non_utf8 = {
        use std::os::unix::ffi::OsStringExt;
        let args: Vec<std::ffi::OsString> = [
            format!("--address={address}").into_bytes(),
            b"call".to_vec(),
            DEST[0].as_bytes().to_vec(),
            DEST[1].as_bytes().to_vec(),
            DEST[2].as_bytes().to_vec(),
            b"Score".to_vec(),
            b"s".to_vec(),
            b"systemd unit \xff\xfe.service".to_vec(),
        ]
        .into_iter()
        .map(std::ffi::OsString::from_vec)
        .collect();
        blocking("busctl", args).await
    };
    assert!(!non_utf8.status.success(), "{}", text_of(&non_utf8));
    assert!(
        daemon.stats().await["HeadSeq"] > 0,
        "the daemon still answers"
    );

    let gdbus = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.extend(["--address".to_owned(), address.clone()]);
        all.extend(["--dest", DEST[0], "--object-path", DEST[1]].map(str::to_owned));
        blocking("gdbus", all)
    };
    let out = gdbus(&["introspect"]).await;
    assert!(text_of(&out).contains("ListEvents("), "{}", text_of(&out));
    let out = gdbus(&[
        "call",
        "--method",
        "org.anomalyd.Detector1.ListAnomalies",
        "0",
        "10",
    ])
    .await;
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("postgresql.service"),
        "{}",
        text_of(&out)
    );
    let out = gdbus(&["call", "--method", "org.anomalyd.Detector1.Explain", &seq]).await;
    assert!(text_of(&out).contains("nginx.service"), "{}", text_of(&out));
    let out = gdbus(&[
        "call",
        "--method",
        "org.anomalyd.Detector1.GetEvent",
        "999999",
    ])
    .await;
    assert!(
        text_of(&out).contains("org.anomalyd.Error.NotFound"),
        "{}",
        text_of(&out)
    );

    // ---- anomalyctl end to end.
    let ctl = |args: &[&str]| {
        let mut all = vec!["--address".to_owned(), address.clone()];
        all.extend(args.iter().map(|s| s.to_string()));
        blocking(env!("CARGO_BIN_EXE_anomalyctl"), all)
    };
    let out = ctl(&["anomalies", "-n", "0", "--json"]).await;
    assert!(out.status.success(), "{}", text_of(&out));
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), anomalies.len() + 1, "{listed:?}");
    assert!(listed.iter().all(|a| a["verdict"] == "anomaly"));
    let out = ctl(&["anomalies", "-n", "2"]).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("disk sda1"), "the newest last: {table}");
    let out = ctl(&["events", "--verdict", "normal", "-n", "3", "--utc"]).await;
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(
        table
            .lines()
            .all(|l| l.contains("Z  #") && l.contains(" normal ")),
        "{table}"
    );
    let out = ctl(&["show", &seq]).await;
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(text_of(&out).contains(&hex::encode(&stored.hash)));
    let out = ctl(&["show", "999999"]).await;
    assert_eq!(out.status.code(), Some(5), "not found: {}", text_of(&out));
    let out = ctl(&["score", &normal_text]).await;
    assert!(
        text_of(&out).starts_with("normal: score"),
        "{}",
        text_of(&out)
    );
    let out = ctl(&["status"]).await;
    assert!(out.status.success(), "{}", text_of(&out));
    for line in [
        "Embedder:",
        "Events:",
        "Threshold: 0.05",
        "Recent anomalies:",
    ] {
        assert!(text_of(&out).contains(line), "{line} in {}", text_of(&out));
    }
    let out = ctl(&["stats", "--json"]).await;
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["EventsDropped"], 0);
    let out = blocking(
        env!("CARGO_BIN_EXE_anomalyctl"),
        vec!["--address", "unix:path=/nonexistent/bus", "stats"],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "unreachable: {}", text_of(&out));
    let out = ctl(&["completions", "bash"]).await;
    assert!(text_of(&out).contains("anomalyctl"));

    // replay: each line submitted, paced.
    let replay = dir.path().join("replay.txt");
    let lines: Vec<String> = (0..20)
        .map(|i| format!("backup job {i} finished"))
        .collect();
    std::fs::write(&replay, lines.join("\n") + "\n\n").unwrap();
    let before = daemon.stats().await["HeadSeq"];
    let out = ctl(&["replay", replay.to_str().unwrap(), "--rate", "200"]).await;
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("submitted 20 lines"),
        "{}",
        text_of(&out)
    );
    daemon
        .wait_for("the replayed lines", |s| s["HeadSeq"] >= before + 20)
        .await;
    let replayed: Vec<_> = read_rows(&daemon.db())
        .into_iter()
        .filter(|r| r.text.starts_with("custom backup job"))
        .collect();
    assert_eq!(replayed.len(), 20);

    // --follow: the backlog, then a new anomaly through the signal.
    let mut follow = std::process::Command::new(env!("CARGO_BIN_EXE_anomalyctl"))
        .args([
            "--address",
            &address,
            "anomalies",
            "-n",
            "1",
            "--follow",
            "--json",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if line_tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let backlog = tokio::time::timeout(Duration::from_secs(10), line_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(backlog.contains("anomaly"), "{backlog}");
    unit_changed(
        &systemd,
        &unit_path("nfs-server.service"),
        "failed",
        "failed",
    )
    .await;
    let followed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let line = line_rx.recv().await.unwrap();
            if line.contains("nfs-server.service") {
                return line;
            }
        }
    })
    .await
    .expect("--follow prints the new anomaly");
    let followed: serde_json::Value = serde_json::from_str(&followed).unwrap();
    assert_eq!(followed["verdict"], "anomaly");
    follow.kill().unwrap();
    let _ = follow.wait();

    // Still healthy after all of it, and the chain intact.
    let ChainReport { ok, .. } = api.call("VerifyChain", &()).await.unwrap();
    assert!(ok);
    drop(api);
    let summary = daemon.stop().await;
    assert_eq!(summary.metrics.events_dropped, 0);
}
