//! The D-Bus query API and `anomalyctl` against a daemon with a few hundred events, on a real
//! private dbus-daemon with the real model: every method through zbus, the read methods and
//! introspection through the real `busctl` and `gdbus`, the client end to end (including
//! `--follow` receiving a signal), and bad arguments answered with the right error while the
//! daemon stays healthy.
//!
//! Each test that needs a daemon starts one of its own, on its own bus in its own temporary
//! directory, through `populated` (or `populated_and_submitted`), so that a failure in one
//! behaviour hides none of the others and any test runs alone or beside the rest. A start with
//! the real model and its few hundred events costs seconds, so the checks that share one such
//! daemon stay in one test. Each ends with `Populated::finish`: still healthy after all of it,
//! the chain intact and nothing dropped.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use zbus::zvariant::{OwnedValue, Value};

use anomalyd::api::{ChainReport, Page, ScoreReply};
use anomalyd::emulate::replay::unit_path;
use common::{api_proxy, fake_systemd, read_rows, unit_changed, Row, RunningDaemon};

const WARMUP: &str = "[detector]\nwarmup_events = 4\n";

/// The units that fail once each after the normal events, six distinct faults.
const FAULTS: [&str; 6] = [
    "postgresql.service",
    "redis-server.service",
    "cron.service",
    "ssh.service",
    "chrony.service",
    "rsyslog.service",
];

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

/// A daemon past its warm-up that has recorded a few hundred normal events and one anomaly per
/// fault, with what the tests query it through.
struct Populated {
    daemon: RunningDaemon,
    /// Owns `org.freedesktop.systemd1` on the daemon's bus, for the unit changes a test adds.
    systemd: zbus::Connection,
    api: zbus::Proxy<'static>,
    /// Every record as stored once the events were written.
    rows: Vec<Row>,
    /// The anomalies among `rows`, one per fault, in seq order.
    anomalies: Vec<Row>,
    /// Last, so that it is removed after the bus and the daemon in it are gone.
    dir: tempfile::TempDir,
}

/// Starts a daemon in a new temporary directory and feeds it, through a fake systemd, a few
/// hundred normal events over two texts, then the six faults.
async fn populated() -> Populated {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), WARMUP).await;
    let systemd = fake_systemd(&daemon.bus).await;
    let nginx = unit_path("nginx.service");
    for _ in 0..150 {
        unit_changed(&systemd, &nginx, "active", "running").await;
        unit_changed(&systemd, &nginx, "inactive", "dead").await;
    }
    for unit in FAULTS {
        unit_changed(&systemd, &unit_path(unit), "failed", "failed").await;
    }
    daemon
        .wait_for("306 events", |s| s["RecordsWritten"] >= 307)
        .await;
    let api = api_proxy(&daemon.conn).await;
    let rows = read_rows(&daemon.db());
    let anomalies: Vec<Row> = rows
        .iter()
        .filter(|r| r.verdict == "anomaly")
        .cloned()
        .collect();
    assert_eq!(anomalies.len(), FAULTS.len(), "each fault is an anomaly");
    Populated {
        daemon,
        systemd,
        api,
        rows,
        anomalies,
        dir,
    }
}

/// As [`populated`], then an anomalous text scored (a dry run, which records nothing) and one
/// anomaly submitted, the newest record: the state the property and client counts assume (the
/// faults and the submitted event, 307 events in all).
async fn populated_and_submitted() -> Populated {
    let p = populated().await;
    let _: ScoreReply = p
        .api
        .call(
            "Score",
            &("systemd unit nfs-server.service ActiveState=failed SubState=failed Result=exit-code",),
        )
        .await
        .unwrap();
    let () = p
        .api
        .call(
            "Submit",
            &("custom", "disk sda1 SMART reallocated sectors 512"),
        )
        .await
        .unwrap();
    p
}

impl Populated {
    /// The text of the first normal record, which the daemon has seen over a hundred times.
    fn normal_text(&self) -> String {
        self.rows
            .iter()
            .find(|r| r.verdict == "normal")
            .unwrap()
            .text
            .clone()
    }

    /// Ends a test: still healthy after all of it, and the chain intact.
    async fn finish(self) {
        let ChainReport { ok, .. } = self.api.call("VerifyChain", &()).await.unwrap();
        assert!(ok);
        drop(self.api);
        let summary = self.daemon.stop().await;
        assert_eq!(summary.metrics.events_dropped, 0);
    }
}

/// ListAnomalies pages through a cursor that ListEvents continues, each row as stored;
/// ListEvents lists everything, newest first, by text and by time; GetEvent gives every field
/// with the hashes as stored; bad limits, filters and seqs are refused with the right error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_with_a_cursor_filter_and_get_every_stored_field() {
    let p = populated().await;
    let (api, rows, anomalies) = (&p.api, &p.rows, &p.anomalies);

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
    let stored = &anomalies[0];
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
    assert!(recent.rows.len() >= 4 && recent.rows.len() < FAULTS.len() + 1);

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

    p.finish().await;
}

/// Score judges a text against what was seen without recording it, and refuses an empty or
/// oversized one; Submit judges and records a text like an observed event, with the caller, and
/// answers only once it is committed, refusing a reserved source and bad texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_records_nothing_and_submit_records_with_its_caller_once_committed() {
    let p = populated().await;
    let api = &p.api;

    // ---- Score: a dry run records nothing.
    let head_before = p.daemon.stats().await["HeadSeq"];
    let normal_text = p.normal_text();
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
        p.daemon.stats().await["HeadSeq"],
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
    let submitted = read_rows(&p.daemon.db()).pop().unwrap();
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
    assert!(p.daemon.stats().await["HeadSeq"] > head_before);
    assert_eq!(submitted.source, "custom");
    assert_eq!(
        submitted.text,
        "custom disk sda1 SMART reallocated sectors 512"
    );
    assert_eq!(submitted.verdict, "anomaly");
    let fields: serde_json::Value = serde_json::from_str(&submitted.fields).unwrap();
    assert_eq!(fields["submitted_by_uid"], 0);

    p.finish().await;
}

/// The properties hold the counters (the events including the submitted one), the threshold and
/// the placement, and PropertiesChanged announces a new EventsTotal when an event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn properties_hold_the_counters_and_signal_their_changes() {
    let p = populated_and_submitted().await;

    let props = zbus::fdo::PropertiesProxy::builder(&p.daemon.conn)
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
    assert_eq!(
        number("AnomaliesTotal"),
        p.daemon.stats().await["Anomalies"]
    );
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
    unit_changed(&p.systemd, &unit_path("nginx.service"), "active", "running").await;
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

    p.finish().await;
}

/// The real clients busctl and gdbus: introspection lists every member, the read methods and a
/// property answer with the right types and texts, a bad limit and a missing record come back as
/// errors, and a text that is not UTF-8 never reaches the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busctl_and_gdbus_introspect_and_call_the_api() {
    let p = populated_and_submitted().await;
    let address = p.daemon.bus.address().to_owned();
    let anomalies = &p.anomalies;
    let stored = &anomalies[0];

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
        p.daemon.stats().await["HeadSeq"] > 0,
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

    p.finish().await;
}

/// anomalyctl end to end against the daemon: listings as JSON and as tables (newest last, in
/// UTC), show with the stored hash and exit status 5 for a missing record, score, status and
/// stats; replay submits a file's lines, paced; --follow prints the backlog, then a new anomaly
/// as its signal arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anomalyctl_lists_shows_scores_replays_and_follows() {
    let p = populated_and_submitted().await;
    let address = p.daemon.bus.address().to_owned();
    let anomalies = &p.anomalies;
    let stored = &anomalies[0];
    let seq = stored.seq.to_string();
    let normal_text = p.normal_text();

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

    // replay: each line submitted, paced.
    let replay = p.dir.path().join("replay.txt");
    let lines: Vec<String> = (0..20)
        .map(|i| format!("backup job {i} finished"))
        .collect();
    std::fs::write(&replay, lines.join("\n") + "\n\n").unwrap();
    let before = p.daemon.stats().await["HeadSeq"];
    let out = ctl(&["replay", replay.to_str().unwrap(), "--rate", "200"]).await;
    assert!(out.status.success(), "{}", text_of(&out));
    assert!(
        text_of(&out).contains("submitted 20 lines"),
        "{}",
        text_of(&out)
    );
    p.daemon
        .wait_for("the replayed lines", |s| s["HeadSeq"] >= before + 20)
        .await;
    let replayed: Vec<_> = read_rows(&p.daemon.db())
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
        &p.systemd,
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

    p.finish().await;
}

/// anomalyctl needs no daemon to tell that none can be reached (exit status 3) or to print shell
/// completions, so this test starts none.
#[test]
fn anomalyctl_exits_3_when_unreachable_and_prints_completions_offline() {
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_anomalyctl"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["--address", "unix:path=/nonexistent/bus", "stats"]);
    assert_eq!(out.status.code(), Some(3), "unreachable: {}", text_of(&out));
    let out = ctl(&["completions", "bash"]);
    assert!(text_of(&out).contains("anomalyctl"));
}
