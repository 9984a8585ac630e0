//! The journal as the fleet's contract, with Debian's real systemd-journal-remote: inside the
//! systemd sandbox, `systemd-journal-upload` pushes the host's journal to a
//! `systemd-journal-remote` on loopback; every anomaly and checkpoint arrives there with all its
//! fields under the host's `_MACHINE_ID` (none lost to journald's rate limit, checkpoints though
//! the log level is "warn"). Then the central copy is the off-host anchor: `anomalyctl verify
//! --journal-dir` catches a chain re-hashed on the host after an edit, or cut short, with the
//! host's checkpoint file gone.
//!
//! Needs root (the sandbox), as CI has.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

#[path = "common/sandbox.rs"]
mod sandbox;
use sandbox::{boot, ensure_packages, inside, inside_ok, prepare, query, wait_until};

#[path = "common/chain.rs"]
mod chain;
use chain::{anomalyctl, rehash_from, tampered};

use anomalyd::journal::{
    ANOMALY_DETECTED_MESSAGE_ID, ANOMALY_REPEATED_MESSAGE_ID, CHECKPOINT_MESSAGE_ID,
    INCIDENT_CLOSED_MESSAGE_ID, STARTED_MESSAGE_ID, STOPPED_MESSAGE_ID,
};

const CONFIG: &str = r#"# The shipped defaults, but quiet logs: the contract must not depend on them.
[daemon]
log_level = "warn"

[detector]
warmup_events = 5

[audit]
checkpoint_records = 10
# The central copy is the only anchor in this test.
checkpoint_file = ""
"#;

/// Units whose real signals make the traffic: two that fail differently, one restarted.
const UNITS: [(&str, &str); 3] = [
    ("fleet-fails.service", "[Service]\nExecStart=/bin/false\n"),
    (
        "fleet-badexec.service",
        "[Service]\nExecStart=/nonexistent/fleet-test-binary\n",
    ),
    (
        "fleet-sleeps.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    ),
];

const REMOTE_DIR: &str = "/var/log/journal/remote";

/// Every entry of the central journal with `message_id`, as journalctl's JSON.
fn remote_entries(message_id: &str) -> Vec<serde_json::Value> {
    let (_, out) = inside(&format!(
        "journalctl --no-pager -o json --directory={REMOTE_DIR} MESSAGE_ID={message_id}"
    ));
    out.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(entry: &'a serde_json::Value, name: &str) -> &'a str {
    entry[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {entry}"))
}

#[test]
fn anomalies_and_checkpoints_reach_journal_remote_and_anchor_the_chain_off_host() {
    ensure_packages(
        "/lib/systemd/systemd-journal-remote",
        &["systemd-journal-remote"],
    );
    let upper = prepare(CONFIG, &UNITS);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _booted = boot();
    let machine_id = inside_ok("cat /etc/machine-id").trim().to_owned();
    assert_eq!(machine_id.len(), 32, "machine id {machine_id:?}");

    // The central side and the uploader, both the Debian package's own binaries. (The sandbox
    // shares the host's network, so the port is one free here.)
    inside_ok(&format!(
        "mkdir -p {REMOTE_DIR} && systemd-run --unit=fleet-remote /lib/systemd/systemd-journal-remote --listen-http={port} --output={REMOTE_DIR}/"
    ));
    wait_until("journal-remote listening", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
            .map(|_| String::new())
    });
    inside_ok(&format!(
        "systemd-run --unit=fleet-upload /lib/systemd/systemd-journal-upload --url=http://127.0.0.1:{port}"
    ));

    // The daemon's journald rate limit is lifted for the unit (docs/fleet.md says why).
    let limit = inside_ok("systemctl show anomalyd -p LogRateLimitIntervalUSec --value");
    assert_eq!(
        limit.trim(),
        "0",
        "LogRateLimitIntervalSec= of anomalyd.service"
    );

    inside_ok("systemctl start anomalyd");
    wait_until("anomalyd active", Duration::from_secs(120), || {
        let (_, state) = inside("systemctl is-active anomalyd");
        (state.trim() == "active").then_some(state)
    });
    // Normal churn, then faults, twice (the second time they repeat open incidents).
    for _ in 0..2 {
        for _ in 0..3 {
            inside("systemctl restart fleet-sleeps.service");
        }
        inside("systemctl start fleet-fails.service; systemctl start fleet-badexec.service");
        std::thread::sleep(Duration::from_millis(500));
    }
    wait_until("anomalies recorded", Duration::from_secs(60), || {
        let n: u64 = query("SELECT count(*) FROM records WHERE verdict = 'anomaly'")
            .first()?
            .parse()
            .ok()?;
        (n >= 2).then(|| n.to_string())
    });
    // An unprivileged local user forges two checkpoints: one beyond the head, one contradicting
    // a genuine checkpoint. journald marks them with the user's uid and no service unit.
    let genuine_seq = wait_until("a genuine checkpoint", Duration::from_secs(30), || {
        let (_, out) = inside(&format!(
            "journalctl --no-pager -o json MESSAGE_ID={CHECKPOINT_MESSAGE_ID} _SYSTEMD_UNIT=anomalyd.service"
        ));
        let entry: serde_json::Value = serde_json::from_str(out.lines().next()?).ok()?;
        entry["CHECKPOINT_SEQ"].as_str().map(str::to_owned)
    });
    let zero = "0".repeat(64);
    inside_ok(&format!(
        "useradd --no-create-home fleet-forger && \
         for seq in 999999999 {genuine_seq}; do \
           printf 'MESSAGE=forged checkpoint\nMESSAGE_ID={CHECKPOINT_MESSAGE_ID}\nSYSLOG_IDENTIFIER=anomalyd\nCHECKPOINT_SEQ=%s\nCHECKPOINT_HASH={zero}\n' $seq \
             | runuser -u fleet-forger -- logger --journald; \
         done"
    ));
    // An operator marks the first incident's anomaly benign: the incident closes, centrally too.
    let opened: u64 = query(
        "SELECT seq FROM records WHERE verdict = 'anomaly' AND json_extract(fields, '$.incident') = seq ORDER BY seq LIMIT 1",
    )[0]
    .parse()
    .unwrap();
    inside_ok(&format!(
        "anomalyctl benign {opened} --note 'fleet test: expected'"
    ));
    wait_until("the benign mark recorded", Duration::from_secs(30), || {
        (!query("SELECT seq FROM records WHERE kind = 'benign'").is_empty()).then(String::new)
    });
    inside_ok("systemctl stop anomalyd");
    // Read back on the host itself, the forgeries are skipped and counted; the chain is intact.
    let (code, said) =
        inside("anomalyctl verify --db /var/lib/anomalyd/audit.sqlite --journal 2>&1");
    assert_eq!(code, 0, "the forged local entries are not believed: {said}");
    assert!(said.contains("ignored 2 checkpoint entries"), "{said}");

    // What the chain holds, to be found centrally.
    let anomalies: Vec<(u64, String, String)> =
        query("SELECT seq, hex(hash), text FROM records WHERE verdict = 'anomaly' ORDER BY seq")
            .iter()
            .map(|row| {
                let mut cols = row.splitn(3, '|');
                (
                    cols.next().unwrap().parse().unwrap(),
                    cols.next().unwrap().to_lowercase(),
                    cols.next().unwrap().to_owned(),
                )
            })
            .collect();
    let head: u64 = query("SELECT max(seq) FROM records")[0].parse().unwrap();

    // Everything up to the stop entry has arrived once the stop entry has.
    wait_until(
        "the stop entry at journal-remote",
        Duration::from_secs(60),
        || (!remote_entries(STOPPED_MESSAGE_ID).is_empty()).then(String::new),
    );
    let mut found: HashMap<u64, serde_json::Value> = HashMap::new();
    for id in [ANOMALY_DETECTED_MESSAGE_ID, ANOMALY_REPEATED_MESSAGE_ID] {
        for entry in remote_entries(id) {
            found.insert(field(&entry, "ANOMALYD_SEQ").parse().unwrap(), entry);
        }
    }
    assert_eq!(
        found.len(),
        anomalies.len(),
        "one central entry per anomaly in the chain ({anomalies:?})"
    );
    let mut repeats = 0;
    for (seq, hash, text) in &anomalies {
        let entry = &found[seq];
        assert_eq!(field(entry, "_MACHINE_ID"), machine_id);
        assert_eq!(field(entry, "PRIORITY"), "4", "{entry}");
        assert_eq!(field(entry, "SYSLOG_IDENTIFIER"), "anomalyd");
        assert_eq!(field(entry, "_SYSTEMD_UNIT"), "anomalyd.service");
        assert_eq!(field(entry, "ANOMALYD_HASH"), hash);
        assert_eq!(field(entry, "ANOMALYD_TEXT"), text);
        let source = field(entry, "ANOMALYD_SOURCE");
        assert!(
            ["systemd", "networkmanager", "login1", "udisks2", "custom"].contains(&source),
            "{entry}"
        );
        let score: f64 = field(entry, "ANOMALYD_SCORE").parse().unwrap();
        let threshold: f64 = field(entry, "ANOMALYD_THRESHOLD").parse().unwrap();
        assert!(score > threshold, "{entry}");
        let incident: u64 = field(entry, "ANOMALYD_INCIDENT").parse().unwrap();
        if field(entry, "MESSAGE_ID") == ANOMALY_REPEATED_MESSAGE_ID {
            repeats += 1;
            assert!(incident < *seq, "{entry}");
            assert!(field(entry, "ANOMALYD_REPEAT").parse::<u64>().unwrap() >= 1);
        } else {
            assert_eq!(incident, *seq, "{entry}");
        }
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert!(
            keys.iter().all(|k| !k.starts_with("F_")),
            "prefixed fields: {keys:?}"
        );
    }
    assert!(
        repeats >= 1,
        "the second round repeats open incidents: {found:?}"
    );

    let checkpoints: Vec<serde_json::Value> = remote_entries(CHECKPOINT_MESSAGE_ID)
        .into_iter()
        .filter(|e| e["_SYSTEMD_UNIT"].as_str() == Some("anomalyd.service"))
        .collect();
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    for entry in &checkpoints {
        assert_eq!(field(entry, "_MACHINE_ID"), machine_id);
        assert_eq!(field(entry, "PRIORITY"), "5", "{entry}");
        assert_eq!(field(entry, "CHECKPOINT_HASH").len(), 64);
    }
    let last: u64 = checkpoints
        .iter()
        .map(|e| field(e, "CHECKPOINT_SEQ").parse::<u64>().unwrap())
        .max()
        .unwrap();
    assert_eq!(last, head, "the checkpoint at stop names the head");
    let closed = remote_entries(INCIDENT_CLOSED_MESSAGE_ID);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(field(&closed[0], "ANOMALYD_INCIDENT"), opened.to_string());
    assert_eq!(field(&closed[0], "PRIORITY"), "5");
    let mark: u64 = query("SELECT seq FROM records WHERE kind = 'benign'")[0]
        .parse()
        .unwrap();
    assert_eq!(field(&closed[0], "ANOMALYD_SEQ"), mark.to_string());
    for id in [STARTED_MESSAGE_ID, STOPPED_MESSAGE_ID] {
        let entries = remote_entries(id);
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(field(&entries[0], "PRIORITY"), "5");
        assert_eq!(field(&entries[0], "_MACHINE_ID"), machine_id);
    }

    // The off-host anchor. The host's files, as the central side would verify them: the database
    // copied off the host, the central journal as journal-remote wrote it.
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("audit.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let from = upper.join(format!("var/lib/anomalyd/audit.sqlite{suffix}"));
        if from.exists() {
            std::fs::copy(&from, work.path().join(format!("audit.sqlite{suffix}"))).unwrap();
        }
    }
    let central = work.path().join("remote");
    copy_dir(&upper.join(REMOTE_DIR.trim_start_matches('/')), &central);
    let dir_arg = central.display().to_string();
    // `anomalyctl verify --db DB --journal-dir <the central copy> [--machine-id ID]`.
    let verify_centrally = |db: &Path, machine: Option<&str>| {
        let mut args = vec![
            "verify",
            "--db",
            db.to_str().unwrap(),
            "--journal-dir",
            &dir_arg,
        ];
        if let Some(id) = machine {
            args.extend(["--machine-id", id]);
        }
        anomalyctl(&args)
    };
    let (code, said) = verify_centrally(&db, Some(&machine_id));
    assert_eq!(
        code, 0,
        "the untouched chain against the central checkpoints: {said}"
    );
    // The forgeries travelled too, and are not believed there either.
    let forged = remote_entries(CHECKPOINT_MESSAGE_ID)
        .iter()
        .filter(|e| e["CHECKPOINT_HASH"].as_str() == Some(zero.as_str()))
        .count();
    assert_eq!(forged, 2, "both forgeries reached journal-remote");
    assert!(said.contains("ignored 2 checkpoint entries"), "{said}");

    // An edit on the host, every later hash recomputed: the chain alone is consistent again,
    // and the host keeps no checkpoint file; the central checkpoints still catch it.
    let edited_seq = anomalies[0].0;
    let edited = tampered(
        &db,
        "edited",
        &format!("UPDATE records SET verdict = 'normal', score = 0.01 WHERE seq = {edited_seq}"),
    );
    rehash_from(&edited, edited_seq);
    let (code, said) = anomalyctl(&["verify", "--db", edited.to_str().unwrap()]);
    assert_eq!(code, 0, "re-hashed, the chain alone verifies: {said}");
    let (code, said) = verify_centrally(&edited, None);
    assert_eq!(
        code, 1,
        "the central checkpoints catch the re-hashed edit: {said}"
    );
    assert!(said.contains("BROKEN"), "{said}");

    // A tail cut off on the host.
    let cut = tampered(
        &db,
        "cut",
        &format!("DELETE FROM records WHERE seq > {}", head - 3),
    );
    let (code, said) = verify_centrally(&cut, None);
    assert_eq!(
        code, 1,
        "the central checkpoints catch the cut tail: {said}"
    );

    // Another machine's chain finds no checkpoint of its own there: that is an error, not OK.
    let other = tampered(
        &db,
        "other",
        "UPDATE records SET fields = json_set(fields, '$.machine_id', '0123456789abcdef0123456789abcdef') WHERE seq = 1",
    );
    rehash_from(&other, 1);
    let (code, said) = verify_centrally(&other, None);
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("no checkpoint of machine 0123456789abcdef"),
        "{said}"
    );
    // A genesis rewritten to name another machine does not escape the host's own checkpoints
    // when the operator names the host.
    let (code, said) = verify_centrally(&other, Some(&machine_id));
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("the chain's genesis names machine 0123456789abcdef"),
        "{said}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
