//! The daemon binary against audit databases it must refuse or cannot write: a file that is not
//! SQLite, a schema from the future, a read-only directory, a full disk. Each gives a clear error
//! naming the file and exit status 1, and leaves the file as it was. Read-only and full disks are
//! real: tmpfs mounts in a private mount namespace (`unshare -m`), so this needs root, as CI has.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

/// Runs the daemon on `state_dir`; `mounts` is shell run first in a private mount namespace.
fn run_daemon(state_dir: &Path, mounts: &str) -> Output {
    let daemon = env!("CARGO_BIN_EXE_anomalyd");
    let script = format!(
        "{mounts}\nexec {daemon} --log stderr --bus unix:path=/nonexistent/bus --model {} --state-dir {}",
        common::model_dir().display(),
        state_dir.display()
    );
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap()
}

fn digest(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn assert_refused(out: &Output, expected: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for e in expected {
        assert!(stderr.contains(e), "expected {e:?} in:\n{stderr}");
    }
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    std::fs::write(
        &db,
        "these are someone's notes, not a database; ".repeat(40),
    )
    .unwrap();
    let before = digest(&db);
    let out = run_daemon(dir.path(), "");
    assert_refused(&out, &[&db.display().to_string(), "not a database"]);
    assert_eq!(digest(&db), before, "the file was not touched");
}

#[test]
fn a_schema_from_the_future_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE records (seq INTEGER PRIMARY KEY); PRAGMA user_version = 99;",
        )
        .unwrap();
    }
    let before = digest(&db);
    let out = run_daemon(dir.path(), "");
    assert_refused(
        &out,
        &["schema version 99 is newer than this build understands (4)"],
    );
    assert_eq!(digest(&db), before, "the file was not touched");
}

#[test]
fn a_read_only_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let out = run_daemon(
        &state,
        &format!("mount -t tmpfs -o ro tmpfs {}", state.display()),
    );
    assert_refused(
        &out,
        &[
            &state.join("audit.sqlite").display().to_string(),
            "unable to open database file",
        ],
    );
    assert!(!state.join("audit.sqlite").exists());
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_no_half_written_chain() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    // A 64 KiB filesystem, filled up before the daemon starts; what it left there is copied out.
    let copy = dir.path().join("left-behind");
    std::fs::create_dir(&copy).unwrap();
    let out = run_daemon(
        &state,
        &format!(
            "mount -t tmpfs -o size=64k tmpfs {state}\n\
             dd if=/dev/zero of={state}/filler bs=1k count=64 2>/dev/null\n\
             {daemon} --log stderr --bus unix:path=/nonexistent/bus --model {model} --state-dir {state}; code=$?\n\
             cp -a {state}/. {copy}/ 2>/dev/null; exit $code",
            state = state.display(),
            copy = copy.display(),
            daemon = env!("CARGO_BIN_EXE_anomalyd"),
            model = common::model_dir().display(),
        ),
    );
    assert_refused(&out, &["audit database", "full"]);
    // Whatever SQLite managed to create holds no record, or only a verifiable chain.
    let db = copy.join("audit.sqlite");
    if db.exists() && std::fs::metadata(&db).unwrap().len() > 0 {
        match anomalyd::audit::verify(&db, &[]) {
            Ok(report) => assert!(report.ok(), "{report:?}"),
            Err(e) => panic!("a half-written database was left behind: {e}"),
        }
    }
}

#[test]
fn a_start_record_that_cannot_be_committed_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.sqlite");
    // A chain that opens (its genesis is there) but refuses every new record, as a database
    // whose disk is full or that was remounted read-only does once the daemon is past opening.
    drop(
        anomalyd::audit::AuditWriter::open(&db, anomalyd::config::Synchronous::Full, "test-model")
            .unwrap(),
    );
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let before = digest(&db);
    // Bounded: before the fix the daemon retried the start record for ever.
    let out = Command::new("timeout")
        .arg("60")
        .arg(env!("CARGO_BIN_EXE_anomalyd"))
        .args([
            "--log",
            "stderr",
            "--bus",
            "unix:path=/nonexistent/bus",
            "--model",
        ])
        .arg(common::model_dir())
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_refused(&out, &["cannot record the start", "disk is full"]);
    assert_eq!(digest(&db), before, "the chain was left as it was");
}
