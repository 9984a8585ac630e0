//! The baseline's life across restarts and operator actions, on a real private dbus-daemon, real
//! SQLite files, the real model and FAISS: it survives a restart (from the snapshot, and rebuilt
//! from the audit log when the snapshot is damaged or gone), `Explain` names the neighbours,
//! `MarkBenign` adds a fault to the baseline through a chained record, suppression rules hold,
//! and `anomalyd baseline import` records one import in the chain.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anomalyd::api::{ExplainNeighbour, ExplainReply};
use common::{api_proxy, fake_systemd, read_rows, unit_changed, RunningDaemon};

const NGINX: &str = "/org/freedesktop/systemd1/unit/nginx_2eservice";
const POSTGRES: &str = "/org/freedesktop/systemd1/unit/postgresql_2eservice";
const WARMUP: &str = "[detector]\nwarmup_events = 4\n";

/// Six normal events (nginx started and stopped three times): two distinct texts.
async fn normal_traffic(systemd: &zbus::Connection) {
    for _ in 0..3 {
        unit_changed(systemd, NGINX, "active", "running").await;
        unit_changed(systemd, NGINX, "inactive", "dead").await;
    }
}

fn verdicts(db: &Path) -> Vec<(u64, String, String)> {
    read_rows(db)
        .into_iter()
        .filter(|r| r.kind == "event")
        .map(|r| (r.seq, r.verdict, r.text))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_survives_restarts_and_a_damaged_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let daemon = RunningDaemon::start_in(&dir.path().join("bus1"), &state, WARMUP).await;
    let systemd = fake_systemd(&daemon.bus).await;
    normal_traffic(&systemd).await;
    daemon.wait_for("six events", |s| s["HeadSeq"] >= 8).await;
    let db = daemon.db();
    daemon.stop().await;

    let table = anomalyd::audit::read_baseline(&db).unwrap();
    assert_eq!(table.len(), 2, "two distinct texts: {table:?}");
    assert_eq!(table.iter().map(|r| r.count).sum::<u64>(), 6);
    let snapshot = state.join("baseline.snapshot");
    assert!(snapshot.is_file(), "a snapshot is written at stop");

    // Restart from the snapshot, then damaged, then gone: the baseline is the same each time,
    // and a repeat of a known text is judged normal at once (no second warm-up).
    for (round, damage) in ["intact", "damaged", "missing"].into_iter().enumerate() {
        match damage {
            "damaged" => {
                let mut bytes = std::fs::read(&snapshot).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0xff;
                std::fs::write(&snapshot, bytes).unwrap();
            }
            "missing" => std::fs::remove_file(&snapshot).unwrap(),
            _ => {}
        }
        let bus = dir.path().join(format!("bus{}", round + 2));
        let daemon = RunningDaemon::start_in(&bus, &state, WARMUP).await;
        let stats = daemon.stats().await;
        assert_eq!(stats["BaselineSize"], 2, "{damage} snapshot: {stats:?}");
        let systemd = fake_systemd(&daemon.bus).await;
        unit_changed(&systemd, NGINX, "active", "running").await;
        let records_before = read_rows(&db).len();
        daemon
            .wait_for("the repeat", |s| s["RecordsWritten"] >= 2)
            .await;
        daemon.stop().await;
        let rows = read_rows(&db);
        let repeat = rows[records_before..]
            .iter()
            .find(|r| r.kind == "event")
            .expect("the repeat was recorded");
        assert_eq!(repeat.verdict, "normal", "{damage} snapshot: {repeat:?}");
        assert!(repeat.score.unwrap() < 0.01, "{repeat:?}");
        assert!(snapshot.is_file(), "the snapshot is rewritten");
    }
    let report = anomalyd::audit::verify(&db, &[]).unwrap();
    assert!(report.ok(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_and_mark_benign_over_dbus() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = RunningDaemon::start(dir.path(), WARMUP).await;
    let systemd = fake_systemd(&daemon.bus).await;
    normal_traffic(&systemd).await;
    unit_changed(&systemd, POSTGRES, "failed", "failed").await;
    daemon.wait_for("the fault", |s| s["Anomalies"] >= 1).await;
    let (fault_seq, _, fault_text) = verdicts(&daemon.db())
        .into_iter()
        .find(|(_, v, _)| v == "anomaly")
        .unwrap();

    let api = api_proxy(&daemon.conn).await;
    let ExplainReply {
        text,
        verdict,
        score,
        threshold,
        neighbours,
    } = api.call("Explain", &(fault_seq,)).await.unwrap();
    assert_eq!(
        (text.as_str(), verdict.as_str()),
        (fault_text.as_str(), "anomaly")
    );
    assert!(score > threshold, "score {score} threshold {threshold}");
    assert_eq!(neighbours.len(), 2, "both baseline texts: {neighbours:?}");
    assert!(
        neighbours[0].distance <= neighbours[1].distance,
        "nearest first"
    );
    for ExplainNeighbour {
        distance,
        text,
        count,
        first_seq,
        ..
    } in &neighbours
    {
        assert!(text.starts_with("systemd unit nginx.service"), "{text}");
        assert_eq!(*count, 3);
        assert!(*first_seq > 0 && *first_seq < fault_seq);
        assert!(*distance > 0.0);
    }

    // The same through the client.
    let ctl = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_anomalyctl"))
            .args(["--bus", daemon.bus.address()])
            .args(args)
            .output()
            .unwrap()
    };
    let out = ctl(&["explain", &fault_seq.to_string()]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{table}");
    assert!(
        table.contains(&format!("#{fault_seq} anomaly: {fault_text}")),
        "{table}"
    );
    assert!(table.contains("systemd unit nginx.service"), "{table}");
    let out = ctl(&["explain", "999999"]);
    assert_eq!(out.status.code(), Some(5), "5: no such record");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record has seq 999999"));

    let missing = api
        .call::<_, _, ExplainReply>("Explain", &(999_999u64,))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("org.anomalyd.Error.NotFound"),
        "{missing}"
    );
    let genesis = api
        .call::<_, _, u64>("MarkBenign", &(1u64, "not an event"))
        .await
        .unwrap_err();
    assert!(
        genesis
            .to_string()
            .contains("org.anomalyd.Error.InvalidArgument"),
        "{genesis}"
    );
    let long_note = "x".repeat(anomalyd::api::MAX_NOTE_BYTES + 1);
    let too_long = api
        .call::<_, _, u64>("MarkBenign", &(fault_seq, long_note.as_str()))
        .await
        .unwrap_err();
    assert!(
        too_long.to_string().contains("InvalidArgument"),
        "{too_long}"
    );

    let mark: u64 = api
        .call("MarkBenign", &(fault_seq, "planned failover test"))
        .await
        .unwrap();
    let rows = read_rows(&daemon.db());
    let record = rows.iter().find(|r| r.seq == mark).unwrap();
    assert_eq!(record.kind, "benign");
    assert_eq!(record.text, fault_text);
    let fields: serde_json::Value = serde_json::from_str(&record.fields).unwrap();
    assert_eq!(fields["target_seq"], fault_seq);
    assert_eq!(fields["note"], "planned failover test");
    use std::os::unix::fs::MetadataExt;
    let my_uid = std::fs::metadata("/proc/self").unwrap().uid();
    assert_eq!(fields["uid"], u64::from(my_uid));

    // The same fault again is now normal: the baseline holds it. (The source reports changes
    // only, so the unit recovers in between; the recovery is new, hence an anomaly.)
    unit_changed(&systemd, POSTGRES, "active", "running").await;
    unit_changed(&systemd, POSTGRES, "failed", "failed").await;
    let stats = daemon
        .wait_for("the repeat", |s| s["HeadSeq"] >= mark + 2)
        .await;
    assert_eq!(stats["Anomalies"], 2, "only the recovery: {stats:?}");
    assert_eq!(stats["MarkedBenign"], 1);
    assert_eq!(stats["BaselineSize"], 3);
    let repeat = verdicts(&daemon.db()).into_iter().last().unwrap();
    assert_eq!(
        (repeat.1.as_str(), repeat.2.as_str()),
        ("normal", fault_text.as_str())
    );
    daemon.stop().await;
    assert!(
        anomalyd::audit::verify(&dir.path().join("state/audit.sqlite"), &[])
            .unwrap()
            .ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suppression_rules_record_without_alerting() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{WARMUP}[[detector.suppress]]\nname = \"db-maintenance\"\nsource = \"systemd\"\n\
         pattern = \"postgresql\\\\.service\"\nuntil = 2099-01-01T00:00:00Z\n"
    );
    let daemon = RunningDaemon::start(dir.path(), &config).await;
    let systemd = fake_systemd(&daemon.bus).await;
    normal_traffic(&systemd).await;
    unit_changed(&systemd, POSTGRES, "failed", "failed").await;
    let stats = daemon
        .wait_for("the suppressed fault", |s| s["Suppressed"] >= 1)
        .await;
    assert_eq!(stats["Anomalies"], 0);
    assert_eq!(stats["BaselineSize"], 2, "a suppressed event does not join");
    let rows = read_rows(&daemon.db());
    let start: serde_json::Value =
        serde_json::from_str(&rows.iter().find(|r| r.kind == "start").unwrap().fields).unwrap();
    assert_eq!(start["suppress"][0]["name"], "db-maintenance");
    let suppressed = rows.iter().find(|r| r.verdict == "suppressed").unwrap();
    let fields: serde_json::Value = serde_json::from_str(&suppressed.fields).unwrap();
    assert_eq!(fields["suppressed_by"], "db-maintenance");
    assert!(suppressed.score.unwrap() > fields["threshold"].as_f64().unwrap());
    daemon.stop().await;
}

fn anomalyd(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_anomalyd"))
        .arg("--state-dir")
        .arg(state)
        .arg("--model")
        .arg(common::model_dir())
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_import_is_one_chained_record_and_trains_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    // 1,200 distinct texts (each twice), enough to train the small IVF index configured below.
    let mut history = String::new();
    for round in 0..2 {
        for i in 0..1200 {
            history.push_str(&format!(
                "custom backup job shard-{i} volume {} finished status ok\n",
                ["alpha", "beta", "gamma"][i % 3]
            ));
        }
        if round == 0 {
            history.push('\n');
        }
    }
    let file = dir.path().join("history.txt");
    std::fs::write(&file, &history).unwrap();
    let config = state.join("import.toml");
    std::fs::write(
        &config,
        "[detector]\nindex = \"IVF16,Flat\"\ntrain_min_vectors = 1000\nnprobe = 4\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let import = |args: &[&str]| {
        let mut all = vec!["--config", config, "baseline", "import"];
        all.extend_from_slice(args);
        anomalyd(&state, &all)
    };

    // A bad line names itself and changes nothing.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"MESSAGE\": \"ok\"}\nnot json\n").unwrap();
    let out = import(&["--format", "journal-json", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json: line 2: not a journal JSON object"),
        "{err}"
    );
    assert!(!state.join("audit.sqlite").exists(), "nothing was written");

    // Nothing to import (blank lines only) is refused before anything is written, too.
    let blank = dir.path().join("blank.txt");
    std::fs::write(&blank, "\n  \n").unwrap();
    let out = import(&[blank.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("blank.txt: no line to import"),
        "{err}"
    );
    assert!(!state.join("audit.sqlite").exists(), "nothing was written");

    // A line of exactly the bound is read, with either line end.
    let widest = dir.path().join("widest.txt");
    let mut bytes = vec![b'x'; anomalyd::offline::MAX_LINE_BYTES];
    bytes.extend(b"\r\n");
    bytes.extend(std::iter::repeat_n(b'y', anomalyd::offline::MAX_LINE_BYTES));
    bytes.extend(b"\n");
    std::fs::write(&widest, &bytes).unwrap();
    let scores = dir.path().join("widest.jsonl");
    let out = anomalyd(
        &state,
        &[
            "score-file",
            widest.to_str().unwrap(),
            "--format",
            "canonical",
            "--out",
            scores.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&scores).unwrap().lines().count(), 2);

    // Input is streamed, never held whole: a line over the bound (1 MiB) is refused by number
    // (for import and score-file alike), as is one that is not UTF-8, before anything is written.
    let long = dir.path().join("long.txt");
    let mut bytes = b"custom fine\ncustom also fine\n".to_vec();
    bytes.extend(std::iter::repeat_n(
        b'x',
        anomalyd::offline::MAX_LINE_BYTES + 1,
    ));
    bytes.extend(b"\ncustom never read\n");
    std::fs::write(&long, &bytes).unwrap();
    let not_utf8 = dir.path().join("latin1.txt");
    std::fs::write(&not_utf8, b"custom fine\ncustom caf\xe9 ouvert\n").unwrap();
    let out_file = dir.path().join("scores.jsonl");
    for (file, said) in [
        (&long, "long.txt: line 3: longer than 1048576 bytes"),
        (&not_utf8, "latin1.txt: line 2: not UTF-8 text"),
    ] {
        let out = import(&[file.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(said), "import: {err}");
        assert!(!state.join("audit.sqlite").exists(), "nothing was written");
        let out = anomalyd(
            &state,
            &[
                "score-file",
                file.to_str().unwrap(),
                "--out",
                out_file.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(said),
            "score-file: {err}"
        );
        assert_eq!(
            std::fs::read(&out_file).unwrap(),
            b"",
            "no line scored before the refusal"
        );
        let out = anomalyd(
            &state,
            &[
                "score-file",
                not_utf8.to_str().unwrap(),
                "--baseline",
                file.to_str().unwrap(),
            ],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(said),
            "score-file --baseline: {err}"
        );
    }

    let out = import(&[file.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "imported 2400 events (1200 distinct, 1200 new to the baseline) from 2401 lines"
        ),
        "{stdout}"
    );

    let db = state.join("audit.sqlite");
    let rows = read_rows(&db);
    let imports: Vec<_> = rows.iter().filter(|r| r.kind == "import").collect();
    assert_eq!(imports.len(), 1);
    let fields: serde_json::Value = serde_json::from_str(&imports[0].fields).unwrap();
    use sha2::Digest;
    assert_eq!(
        fields["file_sha256"],
        hex::encode(sha2::Sha256::digest(history.as_bytes()))
    );
    assert_eq!(fields["events"], 2400);
    assert_eq!(fields["new_texts"], 1200);
    let table = anomalyd::audit::read_baseline(&db).unwrap();
    assert_eq!(table.len(), 1200);
    assert!(table.iter().all(|r| r.count == 2));
    assert!(anomalyd::audit::verify(&db, &[]).unwrap().ok());

    // The lock keeps a second writer out while the state directory is in use.
    let lock = anomalyd::lock::StateLock::acquire(&state).unwrap();
    let out = import(&[file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(lock);

    // The daemon starts on the imported baseline with the trained index from the snapshot.
    let extra = "[detector]\nindex = \"IVF16,Flat\"\ntrain_min_vectors = 1000\nnprobe = 4\n";
    let daemon = RunningDaemon::start_in(&dir.path().join("bus"), &state, extra).await;
    let stats = daemon.stats().await;
    assert_eq!(stats["BaselineSize"], 1200);
    let proxy = api_proxy(&daemon.conn).await;
    let description: String = proxy.get_property("IndexDescription").await.unwrap();
    assert_eq!(description, "IDMap2,IVF16,Flat");
    // Retrain is accepted and the daemon keeps judging.
    let () = proxy.call("Retrain", &()).await.unwrap();
    let systemd = fake_systemd(&daemon.bus).await;
    unit_changed(&systemd, NGINX, "active", "running").await;
    daemon
        .wait_for("the event after retrain", |s| s["RecordsWritten"] >= 2)
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    daemon.stop().await;
    assert!(anomalyd::audit::verify(&db, &[]).unwrap().ok());
}
