//! Real systemd for tests: `../shared/tools/systemd-sandbox` (PID 1 of its own namespaces over a
//! debootstrapped Debian, with its system bus, journald and logind), anomalyd installed into it
//! with `scripts/install` as a packager would. Needs root, as CI has.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

// For `common::model_dir()`, the one place that says where the checkout's model is. The tests
// that include this file reach it as `sandbox::common`: their own `mod common` would load
// tests/common/mod.rs into the crate a second time.
#[path = "mod.rs"]
pub mod common;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sandbox_tool() -> PathBuf {
    root().join("../shared/tools/systemd-sandbox")
}

/// There is one sandbox per machine: one `SANDBOX_DIR`, whose root is debootstrapped once and
/// cached (another directory would debootstrap its own, from the network), and a booted systemd
/// takes the host's whole cgroup tree as its own (no cgroup namespace), so two at once would
/// fight over it. The tests of one binary take turns; cargo runs the binaries one at a time.
static TURN: Mutex<()> = Mutex::new(());

/// This test's turn at the sandbox: take it before `prepare` and drop it after the `Booted`, once
/// the sandbox has stopped.
pub fn take_turn() -> MutexGuard<'static, ()> {
    // A test that failed while holding the turn poisons it; the next still gets a clean sandbox.
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn sandbox(args: &[&str]) -> Output {
    Command::new(sandbox_tool())
        .args(args)
        .output()
        .expect("systemd-sandbox runs")
}

/// Runs a shell command inside the sandbox; returns (exit code, stdout+stderr).
pub fn inside(script: &str) -> (i32, String) {
    let out = sandbox(&["exec", "bash", "-c", script]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

pub fn inside_ok(script: &str) -> String {
    let (code, text) = inside(script);
    assert_eq!(code, 0, "inside the sandbox: {script}\n{text}");
    text
}

pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<String>,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The sandbox needs root (namespaces, overlayfs) and the shared tool.
pub fn require_root_and_tool() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test boots systemd in namespaces and needs root (CI runs as root)"
    );
    assert!(
        sandbox_tool().exists(),
        "{} is missing",
        sandbox_tool().display()
    );
}

/// Installs Debian `packages` into the sandbox's pristine root unless `marker` (a path inside it,
/// e.g. one of their binaries) is already there. Stops the sandbox first: packages go in only
/// while it is down.
pub fn ensure_packages(marker: &str, packages: &[&str]) {
    let created = sandbox(&["create"]);
    assert!(
        created.status.success(),
        "systemd-sandbox create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let rootfs = PathBuf::from(String::from_utf8(created.stdout).unwrap().trim());
    if rootfs.join(marker.trim_start_matches('/')).exists() {
        return;
    }
    sandbox(&["stop"]);
    let mut args = vec!["create"];
    args.extend_from_slice(packages);
    let installed = sandbox(&args);
    assert!(
        installed.status.success(),
        "systemd-sandbox create {}: {}",
        packages.join(" "),
        String::from_utf8_lossy(&installed.stderr)
    );
}

/// Stops the sandbox (wiping its writable layer) however the test ends.
pub struct Booted;

impl Drop for Booted {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let (_, journal) = inside("journalctl -u anomalyd --no-pager -n 60");
            eprintln!("anomalyd's journal at failure:\n{journal}");
        }
        sandbox(&["stop"]);
    }
}

/// A clean sandbox with anomalyd installed by `scripts/install`, `config` as
/// `/etc/anomalyd/anomalyd.toml`, the model where the service looks for it, and `units` in
/// `/etc/systemd/system`; returns the writable layer (the sandbox's `/` once booted).
pub fn prepare(config: &str, units: &[(&str, &str)]) -> PathBuf {
    require_root_and_tool();
    // man-db: scripts/install installs the man pages, which `systemd-analyze verify` looks up
    // through the unit's Documentation=.
    ensure_packages("/usr/bin/man", &["man-db"]);
    sandbox(&["stop"]); // a clean writable layer
    let upper = PathBuf::from(String::from_utf8(sandbox(&["root"]).stdout).unwrap().trim());

    // Install exactly as a packager would, into the layer that becomes the sandbox's /.
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_anomalyd")).parent().unwrap();
    let install = Command::new("bash")
        .arg(root().join("scripts/install"))
        .arg(bin_dir)
        .env("DESTDIR", &upper)
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "scripts/install: {}",
        String::from_utf8_lossy(&install.stderr)
    );
    std::fs::write(upper.join("etc/anomalyd/anomalyd.toml"), config).unwrap();
    // The model where the service looks for it by default, as fetch-model would install it.
    let checkout_model = common::model_dir();
    let model = upper.join("var/lib/anomalyd/models/all-MiniLM-L6-v2");
    std::fs::create_dir_all(&model).unwrap();
    for file in [
        "config.json",
        "sentence_bert_config.json",
        "tokenizer.json",
        "model.safetensors",
    ] {
        std::fs::copy(checkout_model.join(file), model.join(file))
            .expect("the model in models/ (scripts/fetch-model installs it)");
    }
    std::fs::create_dir_all(upper.join("etc/systemd/system")).unwrap();
    for (name, unit) in units {
        std::fs::write(upper.join("etc/systemd/system").join(name), unit).unwrap();
    }
    upper
}

/// Boots the prepared sandbox; it stops when the guard drops.
pub fn boot() -> Booted {
    let booted = sandbox(&["boot"]);
    assert!(
        booted.status.success(),
        "systemd-sandbox boot: {}",
        String::from_utf8_lossy(&booted.stderr)
    );
    Booted
}

/// One SQL query's rows against the daemon's audit database, read-only, `|`-separated.
pub fn query(sql: &str) -> Vec<String> {
    let (_, out) = inside(&format!(
        "sqlite3 -readonly /var/lib/anomalyd/audit.sqlite \"{sql}\""
    ));
    out.lines().map(str::to_owned).collect()
}
