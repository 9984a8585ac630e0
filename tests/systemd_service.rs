//! anomalyd as the systemd service it is, under Debian's real systemd booted by
//! `../shared/tools/systemd-sandbox` (PID 1 of its own namespaces, real system bus, journald):
//! installed with `scripts/install`, started through READY=1 and hardened; a unit that really
//! fails recorded, with its structured journal entry; real units and a logind session recorded;
//! access control on the real system bus; stopped cleanly, its checkpoints in the journal.
//!
//! Each test boots a sandbox of its own and starts the service there. There is one sandbox per
//! machine, so the tests take turns (`sandbox::take_turn`); a boot costs seconds, so the checks
//! that share one booted service stay in one test.
//!
//! Needs root (the sandbox uses namespaces and overlayfs), as CI has.

use std::path::PathBuf;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

#[path = "common/sandbox.rs"]
mod sandbox;
use sandbox::{boot, inside, inside_ok, prepare, query, take_turn, wait_until, Booted};

const TEST_CONFIG: &str = r#"# The shipped defaults, with per-record debug lines so the journal shows their fields.
[daemon]
log_level = "anomalyd=debug,info"

[detector]
warmup_events = 5

[audit]
checkpoint_records = 20

# An operator's own source, which unprivileged programs on the host broadcast to.
[[sources.custom]]
rule = "type='signal',interface='org.example.AnomalydProbe'"
"#;

/// Units that really run, fail and stop, for the records their real signals produce.
const TEST_UNITS: [(&str, &str); 4] = [
    (
        "anomalyd-test-fail.service",
        "[Unit]\nDescription=a unit that fails, for anomalyd's test\n\n[Service]\nExecStart=/bin/false\n",
    ),
    // Not /bin/true: systemd emits a unit's changes when its bus queue runs, so a oneshot that ends
    // within one loop iteration (likely on a loaded machine) never shows `activating` at all.
    (
        "anomalyd-test-oneshot.service",
        "[Service]\nType=oneshot\nExecStart=/bin/sleep 0.5\n",
    ),
    (
        "anomalyd-test-simple.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    ),
    (
        "anomalyd-test-badexec.service",
        "[Service]\nExecStart=/nonexistent/anomalyd-test-binary\n",
    ),
];

const BUSCTL: &str =
    "busctl call org.anomalyd.Detector1 /org/anomalyd/Detector1 org.anomalyd.Detector1";

/// This test's turn at the sandbox, prepared with anomalyd installed (`TEST_CONFIG`) and the test
/// units; returns the turn, to hold until the sandbox has stopped, and the writable layer.
fn prepared() -> (MutexGuard<'static, ()>, PathBuf) {
    let turn = take_turn();
    let upper = prepare(TEST_CONFIG, &TEST_UNITS);
    (turn, upper)
}

/// A freshly booted sandbox of this test's own with anomalyd.service started. When it drops the
/// sandbox stops, then the next test gets its turn (fields drop in order).
struct Started {
    _booted: Booted,
    _turn: MutexGuard<'static, ()>,
}

fn started() -> Started {
    let (turn, _) = prepared();
    let booted = boot();
    inside_ok("systemctl start anomalyd.service");
    Started {
        _booted: booted,
        _turn: turn,
    }
}

/// The texts of the records whose text matches the SQL LIKE `pattern`, in seq order.
fn texts_like(pattern: &str) -> Vec<String> {
    let (_, out) = inside(&format!(
        "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \"SELECT text FROM records WHERE text LIKE '{pattern}' ORDER BY seq\""
    ));
    out.lines().map(str::to_owned).collect()
}

/// Waits until a record with exactly `text` exists; returns every text matching `pattern`.
fn wait_for_text(pattern: &str, text: &str) -> Vec<String> {
    wait_for_records(pattern, text, |seen| seen.iter().any(|t| t == text))
}

/// Waits until the records matching `pattern` satisfy `done` (described by `what`); returns them.
fn wait_for_records(pattern: &str, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        seen = texts_like(pattern);
        if done(&seen) {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("no record {what:?}; records like {pattern:?}: {seen:#?}");
}

/// Waits until the audit database holds at least `n` records.
fn wait_for_record_count(n: usize) {
    wait_until(&format!("{n} records"), Duration::from_secs(30), || {
        let count: usize = query("SELECT count(*) FROM records")
            .first()?
            .trim()
            .parse()
            .ok()?;
        (count >= n).then(String::new)
    });
}

/// Installed by `scripts/install` as a packager would, accepted by systemd's own checker, its
/// users made by sysusers, started through READY=1 (Type=notify), hardened in the running process
/// and not only in the unit file, answering on the real system bus and feeding the watchdog.
#[test]
fn installs_and_runs_as_a_hardened_notify_service() {
    let (_turn, upper) = prepared();
    for installed in [
        "usr/bin/anomalyd",
        "usr/bin/anomalyctl",
        "usr/lib/anomalyd/fetch-model",
        "usr/lib/systemd/system/anomalyd.service",
        "usr/lib/sysusers.d/anomalyd.conf",
        "usr/share/dbus-1/system.d/org.anomalyd.Detector1.conf",
        "etc/anomalyd/anomalyd.toml",
    ] {
        assert!(
            upper.join(installed).exists(),
            "scripts/install put {installed} in place"
        );
    }
    let _booted = boot();

    // The unit file is accepted by systemd's own checker.
    let (code, verify) =
        inside("systemd-analyze verify /usr/lib/systemd/system/anomalyd.service 2>&1");
    assert_eq!(code, 0, "systemd-analyze verify: {verify}");

    // sysusers ran at boot: the service user and both groups exist.
    inside_ok("getent passwd anomalyd && getent group anomalyd && getent group anomalyd-admin");

    // Type=notify: `systemctl start` returns only after READY=1.
    let started = Instant::now();
    inside_ok("systemctl start anomalyd.service");
    let ready_after = started.elapsed();
    assert_eq!(
        inside_ok("systemctl is-active anomalyd.service").trim(),
        "active"
    );
    let show = inside_ok(
        "systemctl show anomalyd.service -p Type -p NotifyAccess -p WatchdogUSec -p StatusText -p MainPID \
         -p NoNewPrivileges -p ProtectSystem -p ProtectHome -p PrivateTmp -p RestrictAddressFamilies \
         -p CapabilityBoundingSet -p RestartPreventExitStatus -p StateDirectory -p User \
         -p IPAddressDeny -p IPAddressAllow -p LogRateLimitIntervalUSec",
    );
    for expected in [
        "Type=notify",
        "WatchdogUSec=30s",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        // IP only for the opt-in metrics endpoint, and only to and from this host.
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "LogRateLimitIntervalUSec=0",
        "CapabilityBoundingSet=\n",
        "RestartPreventExitStatus=78",
        "StateDirectory=anomalyd",
        "User=anomalyd",
        "StatusText=watching system as org.anomalyd.Detector1",
    ] {
        assert!(show.contains(expected), "expected {expected:?} in:\n{show}");
    }
    // systemd lists the addresses in no fixed order.
    for (property, addresses) in [
        ("IPAddressDeny=", ["0.0.0.0/0", "::/0"]),
        ("IPAddressAllow=", ["127.0.0.0/8", "::1/128"]),
    ] {
        let line = show
            .lines()
            .find_map(|l| l.strip_prefix(property))
            .unwrap_or_else(|| panic!("no {property} in:\n{show}"));
        let mut listed: Vec<&str> = line.split_whitespace().collect();
        listed.sort_unstable();
        let mut expected = addresses.to_vec();
        expected.sort_unstable();
        assert_eq!(listed, expected, "{property}");
    }
    let pid: u32 = show
        .lines()
        .find_map(|l| l.strip_prefix("MainPID="))
        .and_then(|p| p.parse().ok())
        .expect("MainPID");

    // The hardening is in force in the running process, not only in the unit file.
    let status = inside_ok(&format!("cat /proc/{pid}/status"));
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert_eq!(
        inside_ok(&format!("stat -c %U /proc/{pid}")).trim(),
        "anomalyd"
    );
    let (code, write_usr) = inside(&format!(
        "nsenter -t {pid} -m -- touch /usr/anomalyd-probe 2>&1"
    ));
    assert_ne!(
        code, 0,
        "ProtectSystem=strict: /usr is read-only to the service"
    );
    assert!(write_usr.contains("Read-only file system"), "{write_usr}");
    inside_ok("touch /root/anomalyd-secret");
    let (code, _) = inside(&format!(
        "nsenter -t {pid} -m -- test -e /root/anomalyd-secret"
    ));
    assert_ne!(
        code, 0,
        "ProtectHome=yes hides /root's contents from the service"
    );
    inside_ok(&format!(
        "nsenter -t {pid} -m -- touch /var/lib/anomalyd/.probe"
    ));
    inside_ok("test -f /var/lib/anomalyd/audit.sqlite");

    // Answering on the real system bus under its well-known name.
    let stats = inside_ok("anomalyctl stats");
    assert!(stats.contains("EmbedderBackend: cpu"), "{stats}");

    // Logged as the watchdog's feeder starts, which the daemon spawns before it sends READY=1.
    let (_, watchdog) =
        inside("journalctl -u anomalyd.service --no-pager -g 'feeding the systemd watchdog'");
    assert!(
        watchdog.contains("feeding the systemd watchdog"),
        "watchdog fed from pipeline probes: {watchdog}"
    );

    eprintln!("anomalyd reached READY=1 in {ready_after:?} under real systemd");
}

/// A unit made to fail becomes a record, and its journal entry is the contract's (docs/fleet.md):
/// structured fields under the anomaly's MESSAGE_ID, at warning priority, explained by the
/// installed catalog.
#[test]
fn a_failing_unit_is_recorded_as_an_anomaly_in_the_journal() {
    let _service = started();
    inside("systemctl start anomalyd-test-fail.service");
    let record = wait_until("the failed unit's record", Duration::from_secs(30), || {
        let (_, text) = inside(
            "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \
             \"SELECT seq || '|' || text FROM records WHERE text LIKE '%anomalyd-test-fail.service ActiveState=failed%' LIMIT 1\"",
        );
        let text = text.trim().to_owned();
        text.contains("ActiveState=failed").then_some(text)
    });
    let (seq, text) = record.split_once('|').unwrap();
    assert_eq!(
        text,
        "systemd unit anomalyd-test-fail.service ActiveState=failed SubState=failed Result=exit-code"
    );

    // Structured fields, not only formatted text.
    let journal = wait_until(
        "the record's journal entry",
        Duration::from_secs(15),
        || {
            let (_, j) = inside(&format!(
                "journalctl -u anomalyd.service -o json --no-pager ANOMALYD_SEQ={seq}"
            ));
            (!j.trim().is_empty()).then_some(j)
        },
    );
    let entry: serde_json::Value = serde_json::from_str(journal.lines().next().unwrap()).unwrap();
    assert_eq!(entry["ANOMALYD_SEQ"], serde_json::json!(seq));
    assert_eq!(entry["ANOMALYD_SOURCE"], "systemd");
    assert_eq!(entry["ANOMALYD_TEXT"], serde_json::json!(text));
    assert_eq!(
        entry["MESSAGE_ID"],
        anomalyd::journal::ANOMALY_DETECTED_MESSAGE_ID,
        "{entry}"
    );
    assert_eq!(entry["PRIORITY"], "4", "{entry}");
    assert!(
        entry["ANOMALYD_SCORE"]
            .as_str()
            .is_some_and(|s| s.parse::<f64>().is_ok()),
        "{entry}"
    );
    assert_eq!(entry["SYSLOG_IDENTIFIER"], "anomalyd");
    // journalctl -x explains it from the installed catalog.
    let explained = inside_ok(&format!(
        "journalctl --update-catalog && journalctl -x -u anomalyd.service --no-pager ANOMALYD_SEQ={seq}"
    ));
    assert!(explained.contains("anomalyctl explain"), "{explained}");
}

/// Starts, restarts, stops and fails real units, runs a transient one and opens a logind session,
/// and checks the records the real signals produced.
#[test]
fn real_units_and_a_logind_session_become_records() {
    let _service = started();
    inside_ok("systemctl start anomalyd-test-oneshot.service");
    let oneshot = wait_for_text(
        "%anomalyd-test-oneshot.service%",
        "systemd unit anomalyd-test-oneshot.service ActiveState=inactive SubState=dead Result=success",
    );
    let activating = "systemd unit anomalyd-test-oneshot.service ActiveState=activating SubState=start Result=success";
    assert!(
        oneshot.iter().any(|t| t == activating),
        "{activating:?} in {oneshot:#?}"
    );
    // systemd sends JobRemoved after the unit's last change, so its record may come a moment later.
    wait_for_records(
        "systemd job anomalyd-test-oneshot.service%",
        "systemd job anomalyd-test-oneshot.service result=done",
        |seen| seen.iter().any(|t| t.ends_with("result=done")),
    );

    inside_ok("systemctl start anomalyd-test-simple.service && sleep 0.3 && systemctl restart anomalyd-test-simple.service && sleep 0.3 && systemctl stop anomalyd-test-simple.service");
    // start, restart, stop: running twice, then stopped (deactivating, then inactive) twice.
    let unit = "systemd unit anomalyd-test-simple.service";
    let running = format!("{unit} ActiveState=active SubState=running Result=success");
    let stopping = format!("{unit} ActiveState=deactivating SubState=stop-sigterm Result=success");
    let stopped = format!("{unit} ActiveState=inactive SubState=dead Result=success");
    let count = |seen: &[String], text: &str| seen.iter().filter(|t| *t == text).count();
    wait_for_records(
        &format!("{unit} ActiveState=%"),
        "started, restarted, then stopped last",
        |seen| {
            count(seen, &running) >= 2
                && count(seen, &stopping) >= 2
                && seen.last() == Some(&stopped)
        },
    );

    // A bad ExecStart fails in exec (status 203/EXEC): systemd reports Result=exit-code.
    inside("systemctl start anomalyd-test-badexec.service");
    wait_for_text(
        "%anomalyd-test-badexec.service%",
        "systemd unit anomalyd-test-badexec.service ActiveState=failed SubState=failed Result=exit-code",
    );

    // A transient unit: its random name is volatile, so the text says run-*.service and the
    // fields keep the real name.
    inside_ok("systemd-run --quiet /bin/true");
    wait_for_text(
        "systemd unit run-*.service%",
        "systemd unit run-*.service loaded",
    );
    let (_, unit) = inside(
        "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \"SELECT json_extract(fields, '$.unit') FROM records WHERE text = 'systemd unit run-*.service loaded' LIMIT 1\"",
    );
    assert!(
        unit.trim().starts_with("run-") && unit.trim() != "run-*.service",
        "the record keeps the transient unit's real name: {unit}"
    );

    // A logind session: PAM's pam_systemd registers it with the real logind.
    inside_ok("useradd --create-home anomalyd-tester && runuser -l anomalyd-tester -c 'sleep 0.5'");
    let login = wait_for_text(
        "login1 %",
        "login1 session removed user=anomalyd-tester class=background",
    );
    for expected in [
        "login1 user new name=anomalyd-tester",
        "login1 session new user=anomalyd-tester class=background type=unspecified service=runuser-l",
    ] {
        assert!(login.iter().any(|t| t == expected), "{expected:?} in {login:#?}");
    }
    let (_, session_id) = inside(
        "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \"SELECT json_extract(fields, '$.session_id') FROM records WHERE text LIKE 'login1 session new user=anomalyd-tester%' LIMIT 1\"",
    );
    assert!(
        !session_id.trim().is_empty(),
        "the session id is kept in the fields"
    );

    let stats = inside_ok("anomalyctl stats");
    for clean in ["SignalsMalformed: 0", "EventsForged: 0", "EventsDropped: 0"] {
        assert!(stats.contains(clean), "{clean} in {stats}");
    }
}

/// Both layers of access control on the real system bus. The shipped policy lets group anomalyd
/// read and refuses it the admin methods, lets group anomalyd-admin call them, and gives anyone
/// else nothing; with a deliberately permissive policy added, the daemon's own uid/group check
/// still refuses the admin methods.
#[test]
fn access_control_holds_on_the_real_system_bus() {
    let _service = started();
    // Readers list five records below: a unit's run makes them (after the genesis and start).
    inside_ok("systemctl start anomalyd-test-oneshot.service");
    wait_for_record_count(5);
    inside_ok(
        "useradd --no-create-home --groups anomalyd anomalyd-reader && \
         useradd --no-create-home --groups anomalyd-admin anomalyd-operator && \
         useradd --no-create-home anomalyd-stranger",
    );
    let as_user = |user: &str, command: &str| inside(&format!("runuser -u {user} -- {command}"));

    // No group: the bus refuses even the read methods.
    let (code, out) = as_user("anomalyd-stranger", "anomalyctl anomalies -n 1");
    assert_eq!(code, 4, "access denied: {out}");
    assert!(
        out.contains("org.freedesktop.DBus.Error.AccessDenied"),
        "{out}"
    );

    // Readers read, and the bus refuses them the admin methods.
    let (code, out) = as_user("anomalyd-reader", "anomalyctl events -n 5");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 5, "{out}");
    let (code, out) = as_user("anomalyd-reader", "anomalyctl status");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Events:"), "{out}");
    for admin in ["anomalyctl retrain", "anomalyctl benign 3 --note reader"] {
        let (code, out) = as_user("anomalyd-reader", admin);
        assert_eq!(code, 4, "{admin}: {out}");
        assert!(
            out.contains("org.freedesktop.DBus.Error.AccessDenied"),
            "{admin}: {out}"
        );
    }
    let (code, out) = as_user(
        "anomalyd-reader",
        &format!("{BUSCTL} Submit ss custom 'reader event'"),
    );
    assert_ne!(code, 0, "{out}");

    // The daemon's signals reach readers, not strangers (an anomaly's text names units, users
    // and devices): the bus policy's receive rules.
    inside_ok(
        "for u in anomalyd-reader anomalyd-stranger; do \
           runuser -u $u -- timeout 8 dbus-monitor --system \
             \"type='signal',path='/org/anomalyd/Detector1'\" > /tmp/signals-$u.log 2>&1 & \
         done; sleep 1",
    );
    inside_ok(
        "systemctl start anomalyd-test-badexec.service; sleep 1; \
         busctl call org.anomalyd.Detector1 /org/anomalyd/Detector1 org.anomalyd.Detector1 \
           Submit ss custom 'a novel event for the signal test, 9f3e'",
    );
    let reader_saw = wait_until("the reader's monitor", Duration::from_secs(20), || {
        let (_, log) = inside("cat /tmp/signals-anomalyd-reader.log");
        log.contains("path=/org/anomalyd/Detector1").then_some(log)
    });
    assert!(
        reader_saw.contains("interface=org.anomalyd.Detector1")
            || reader_saw.contains("member=PropertiesChanged"),
        "{reader_saw}"
    );
    std::thread::sleep(Duration::from_secs(8));
    let (_, stranger_saw) = inside("cat /tmp/signals-anomalyd-stranger.log");
    assert!(
        !stranger_saw.contains("path=/org/anomalyd/Detector1"),
        "a user outside the groups received the daemon's signals:\n{stranger_saw}"
    );

    // An unprivileged program's broadcast reaches a custom source: the policy refuses strangers
    // the daemon's methods, not the signals it listens to.
    let (code, out) = as_user(
        "anomalyd-stranger",
        "dbus-send --system --type=signal /org/example/AnomalydProbe org.example.AnomalydProbe.Tick string:from-a-stranger",
    );
    assert_eq!(code, 0, "{out}");
    wait_until(
        "the stranger's broadcast recorded",
        Duration::from_secs(30),
        || {
            let (_, rows) = inside(
                "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \
             \"SELECT text FROM records WHERE source = 'custom' AND text LIKE '%AnomalydProbe%'\"",
            );
            (!rows.trim().is_empty()).then_some(rows)
        },
    );

    // Administrators call them.
    let (code, out) = as_user("anomalyd-operator", "anomalyctl retrain");
    assert_eq!(code, 0, "{out}");
    let (code, out) = as_user(
        "anomalyd-operator",
        &format!("{BUSCTL} Submit ss custom 'operator maintenance window opened'"),
    );
    assert_eq!(code, 0, "{out}");
    let uid = inside_ok("id -u anomalyd-operator").trim().to_owned();
    let fields = wait_until("the submitted record", Duration::from_secs(30), || {
        let (_, f) = inside(
            "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \
             \"SELECT fields FROM records WHERE text = 'custom operator maintenance window opened'\"",
        );
        (!f.trim().is_empty()).then_some(f)
    });
    let fields: serde_json::Value = serde_json::from_str(fields.trim()).unwrap();
    assert_eq!(fields["submitted_by_uid"].to_string(), uid);

    // A permissive policy opens the bus to everyone; the daemon still refuses the admin methods.
    inside_ok(
        "printf '%s\n' '<busconfig><policy context=\"default\"><allow send_destination=\"org.anomalyd.Detector1\"/></policy></busconfig>' \
           > /etc/dbus-1/system.d/zz-anomalyd-permissive.conf && \
         busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig",
    );
    let (code, out) = as_user("anomalyd-stranger", "anomalyctl anomalies -n 1");
    assert_eq!(code, 0, "the permissive policy lets reads through: {out}");
    for admin in [
        "anomalyctl retrain",
        "anomalyctl benign 3 --note stranger",
        "anomalyctl replay /etc/hostname",
    ] {
        let (code, out) = as_user("anomalyd-stranger", admin);
        assert_eq!(code, 4, "{admin}: {out}");
        assert!(
            out.contains("org.anomalyd.Error.AccessDenied") && out.contains("anomalyd-admin"),
            "{admin}: the daemon's own refusal: {out}"
        );
    }
    let stats = inside_ok("anomalyctl stats");
    assert!(
        stats.contains("AccessDenied: 3"),
        "denials are counted: {stats}"
    );
    let (_, refused) =
        inside("journalctl -u anomalyd.service --no-pager -o json -g 'admin call refused'");
    assert_eq!(refused.lines().count(), 3, "denials are logged: {refused}");
    assert!(refused.contains("\"METHOD\":\"Retrain\""), "{refused}");
    // A large admin group, whose entry outgrows a 16 KiB buffer, still admits its members (the
    // daemon's lookup grows its buffer on ERANGE instead of finding no group).
    inside_ok(
        r#"members=$(seq -f 'member%05g' 1 3000 | paste -sd, -) && \
           awk -v m="$members" -F: 'BEGIN { OFS = ":" } $1 == "anomalyd-admin" { $4 = $4 "," m } { print }' \
             /etc/group > /tmp/group.new && cat /tmp/group.new > /etc/group && \
           test "$(getent group anomalyd-admin | wc -c)" -gt 20000"#,
    );
    let (code, out) = as_user("anomalyd-operator", "anomalyctl retrain");
    assert_eq!(code, 0, "a member of a large anomalyd-admin group: {out}");
    inside_ok(
        "rm /etc/dbus-1/system.d/zz-anomalyd-permissive.conf && \
         busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig",
    );
}

/// `systemctl stop` is SIGTERM, a drain and exit 0, with the stop record last. The daemon's
/// checkpoints are structured journal entries under their own MESSAGE_ID, and `anomalyctl verify
/// --journal` holds the database against them: a tail cut off the database after the daemon
/// stopped is caught.
#[test]
fn stops_cleanly_and_its_journal_checkpoints_catch_a_cut_tail() {
    let _service = started();
    // More records than TEST_CONFIG's checkpoint_records, so a periodic checkpoint comes before
    // the stop's.
    inside_ok(&format!(
        "for i in $(seq 25); do {BUSCTL} Submit ss custom \"checkpoint filler $i\" || exit 1; done"
    ));

    // systemctl stop: SIGTERM, drain, exit 0.
    inside_ok("systemctl stop anomalyd.service");
    let after =
        inside_ok("systemctl show anomalyd.service -p ActiveState -p Result -p ExecMainStatus");
    assert!(after.contains("ActiveState=inactive"), "{after}");
    assert!(after.contains("Result=success"), "{after}");
    assert!(after.contains("ExecMainStatus=0"), "{after}");
    let last = inside_ok("sqlite3 -readonly /var/lib/anomalyd/audit.sqlite 'SELECT kind FROM records ORDER BY seq DESC LIMIT 1'");
    assert_eq!(last.trim(), "stop");

    let id = anomalyd::audit::CHECKPOINT_MESSAGE_ID;
    let journal = inside_ok(&format!("journalctl --no-pager -o json MESSAGE_ID={id}"));
    let entries: Vec<serde_json::Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        entries.len() >= 2,
        "checkpoints every 20 records and at stop: {journal}"
    );
    for entry in &entries {
        assert_eq!(entry["SYSLOG_IDENTIFIER"], "anomalyd");
        assert!(
            entry["CHECKPOINT_SEQ"]
                .as_str()
                .is_some_and(|s| s.parse::<u64>().is_ok()),
            "{entry}"
        );
        assert_eq!(
            entry["CHECKPOINT_HASH"].as_str().map(str::len),
            Some(64),
            "{entry}"
        );
    }
    let last_seq: u64 = entries.last().unwrap()["CHECKPOINT_SEQ"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let head = inside_ok("anomalyctl head --db /var/lib/anomalyd/audit.sqlite");
    assert!(
        head.starts_with(&format!("{last_seq}:")),
        "the stop checkpoint is the head: {head} vs {journal}"
    );

    let (code, out) = inside("anomalyctl verify --db /var/lib/anomalyd/audit.sqlite --journal");
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("chain OK"), "{out}");
    let (code, out) = inside("anomalyctl verify --db /var/lib/anomalyd/audit.sqlite --checkpoints /var/lib/anomalyd/checkpoints");
    assert_eq!(code, 0, "{out}");

    // A cut that hides itself: the last records go, and so do the baseline rows they admitted
    // (the fillers are distinct texts, so each row is its record's own), or verification would
    // catch the cut without any checkpoint.
    inside_ok(&format!(
        "sqlite3 /var/lib/anomalyd/audit.sqlite 'DELETE FROM records WHERE seq > {cut}; DELETE FROM baseline WHERE first_seq > {cut}'",
        cut = last_seq - 3
    ));
    let (code, out) = inside("anomalyctl verify --db /var/lib/anomalyd/audit.sqlite");
    assert_eq!(code, 0, "the cut chain is valid on its own: {out}");
    // Verify names the first checkpoint beyond the cut (a periodic one may precede the stop's).
    let first_beyond = entries
        .iter()
        .map(|e| {
            e["CHECKPOINT_SEQ"]
                .as_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .filter(|&seq| seq > last_seq - 3)
        .min()
        .unwrap();
    let (code, out) = inside("anomalyctl verify --db /var/lib/anomalyd/audit.sqlite --journal");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!("chain BROKEN at seq {first_beyond}: truncated")),
        "{out}"
    );
}
