//! The Debian package, as an administrator meets it, under Debian's real systemd booted by
//! `../shared/tools/systemd-sandbox`: built by `scripts/package` (cargo-deb), installed with dpkg,
//! the model put in place the documented way (`/usr/lib/anomalyd/fetch-model`, from the checkout's
//! copy: the sandbox has no network), the service started and recording a unit that fails; then
//! removed (service stopped, binaries gone, conffile and audit chain kept) and purged (both gone);
//! and upgraded under a running daemon (the operator's conffile change kept without a prompt, the
//! chain continued).
//!
//! Needs root (the sandbox), dpkg-deb, and cargo-deb (scripts/package installs it when missing).
//! It packages the release binaries this test run was built with (`cargo test --release`, as
//! scripts/test runs it): a test cannot run `cargo build` while cargo holds the build directory.
//! `ANOMALYD_DEB=PATH` (a .deb, or a directory holding one anomalyd_*.deb) tests that package
//! instead of building one.
//!
//! Both tests boot the one shared sandbox, so they take turns (`SANDBOX`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

#[path = "common/sandbox.rs"]
mod sandbox;
use sandbox::common;
use sandbox::{boot, inside, inside_ok, query, root, sandbox, wait_until};

/// The sandbox is one per machine: the tests in this binary run one at a time.
static SANDBOX: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A test that failed while holding the lock poisons it; the next still gets a clean sandbox.
    SANDBOX
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the packages and the model are staged inside the sandbox (a directory of its own, so
/// the writable layer shadows nothing of the pristine root).
const STAGE: &str = "/anomalyd-test";
const STATE: &str = "/var/lib/anomalyd";
const DB: &str = "/var/lib/anomalyd/audit.sqlite";
const MODEL: &str = "/var/lib/anomalyd/models/all-MiniLM-L6-v2";
const CONFFILE: &str = "/etc/anomalyd/anomalyd.toml";

const FAILING_UNIT: &str =
    "[Unit]\nDescription=a unit that fails, for anomalyd's package test\n\n[Service]\nExecStart=/bin/false\n";
const FAILED_TEXT: &str =
    "systemd unit anomalyd-test-fail.service ActiveState=failed SubState=failed Result=exit-code";

/// Every path the package installs (cargo-deb's and scripts/package's checks name the same).
const INSTALLED: [&str; 16] = [
    "/usr/bin/anomalyd",
    "/usr/bin/anomalyctl",
    "/usr/lib/anomalyd/fetch-model",
    "/usr/lib/systemd/system/anomalyd.service",
    "/usr/lib/systemd/system/anomalyd.service.d/model.conf",
    "/usr/lib/sysusers.d/anomalyd.conf",
    "/usr/share/dbus-1/system.d/org.anomalyd.Detector1.conf",
    "/usr/lib/systemd/catalog/anomalyd.catalog",
    CONFFILE,
    "/usr/share/man/man8/anomalyd.8.gz",
    "/usr/share/man/man1/anomalyctl.1.gz",
    "/usr/share/man/man5/anomalyd.toml.5.gz",
    "/usr/share/doc/anomalyd/README.md",
    "/usr/share/doc/anomalyd/copyright",
    "/usr/share/doc/anomalyd/changelog.Debian.gz",
    "/usr/share/lintian/overrides/anomalyd",
];

/// Runs `scripts/package` on the binaries this test run was built with; returns the .deb.
fn build_package(version: Option<&str>, out_dir: &Path) -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_anomalyd")).parent().unwrap();
    assert!(
        bin_dir.ends_with("release"),
        "the package holds target/release's binaries, but this test was built into {}: run it \
         with `cargo test --release` (as scripts/test does), or point ANOMALYD_DEB at a package",
        bin_dir.display()
    );
    std::fs::create_dir_all(out_dir).unwrap();
    let mut command = Command::new("bash");
    command
        .arg(root().join("scripts/package"))
        .current_dir(root())
        .env("ANOMALYD_PACKAGE_NO_BUILD", "1")
        .env("ANOMALYD_DEB_OUTPUT", out_dir);
    if let Some(version) = version {
        command.env("ANOMALYD_DEB_VERSION", version);
    }
    let out = command.output().expect("bash runs scripts/package");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/package failed ({}):\n{stdout}{stderr}",
        out.status
    );
    let deb = PathBuf::from(stdout.lines().next_back().unwrap_or_default().trim());
    assert!(
        deb.is_file() && deb.starts_with(out_dir),
        "scripts/package's last line names the package in {}: {stdout}{stderr}",
        out_dir.display()
    );
    deb
}

/// The package under test: `ANOMALYD_DEB`, or one built once for every test in this binary.
fn package_under_test() -> PathBuf {
    static DEB: OnceLock<PathBuf> = OnceLock::new();
    DEB.get_or_init(|| {
        if let Some(given) = std::env::var_os("ANOMALYD_DEB") {
            let given = PathBuf::from(given);
            if given.is_dir() {
                let debs: Vec<PathBuf> = std::fs::read_dir(&given)
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .filter(|p| {
                        let name = p.file_name().unwrap().to_string_lossy();
                        name.starts_with("anomalyd_") && name.ends_with(".deb")
                    })
                    .collect();
                assert_eq!(
                    debs.len(),
                    1,
                    "ANOMALYD_DEB={} must hold exactly one anomalyd_*.deb: {debs:?}",
                    given.display()
                );
                return debs[0].clone();
            }
            assert!(
                given.is_file(),
                "ANOMALYD_DEB={} is not a file",
                given.display()
            );
            return given;
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-package");
        let _ = std::fs::remove_dir_all(&dir);
        build_package(None, &dir.join("current"))
    })
    .clone()
}

/// A field of a package's control file.
fn deb_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .arg("--field")
        .arg(deb)
        .arg(field)
        .output()
        .expect("dpkg-deb runs");
    assert!(
        out.status.success(),
        "dpkg-deb --field {}: {out:?}",
        deb.display()
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The same package with a higher version, as the next release would be: built by
/// scripts/package with ANOMALYD_DEB_VERSION, or (for a given ANOMALYD_DEB, whose sources may not
/// be here) the given package re-versioned with dpkg-deb.
fn newer_package(current: &Path, version: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-package/newer");
    let _ = std::fs::remove_dir_all(&dir);
    if std::env::var_os("ANOMALYD_DEB").is_none() {
        return build_package(Some(version), &dir);
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tree = dir.join("tree");
    let run = |args: &[&std::ffi::OsStr]| {
        let out = Command::new("dpkg-deb")
            .args(args)
            .output()
            .expect("dpkg-deb runs");
        assert!(out.status.success(), "dpkg-deb {args:?}: {out:?}");
    };
    run(&[
        "--raw-extract".as_ref(),
        current.as_os_str(),
        tree.as_os_str(),
    ]);
    let control_path = tree.join("DEBIAN/control");
    let control = std::fs::read_to_string(&control_path).unwrap();
    let control: String = control
        .lines()
        .map(|l| {
            if l.starts_with("Version:") {
                format!("Version: {version}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&control_path, control).unwrap();
    let deb = dir.join(format!("anomalyd_{version}.deb"));
    run(&[
        "--root-owner-group".as_ref(),
        "--build".as_ref(),
        tree.as_os_str(),
        deb.as_os_str(),
    ]);
    deb
}

/// A clean sandbox (nothing of anomalyd in it) with `files` (name, source) staged in STAGE, the
/// checkout's model in STAGE/model as a Hugging Face download would be, and a unit that fails;
/// then booted. The sandbox stops when the guard drops.
fn boot_with(files: &[(&str, &Path)]) -> sandbox::Booted {
    sandbox::require_root_and_tool();
    // man-db, so `man anomalyd` (and systemd-analyze's check of Documentation=) works there.
    sandbox::ensure_packages("/usr/bin/man", &["man-db"]);
    sandbox(&["stop"]); // a clean writable layer
    let upper = PathBuf::from(String::from_utf8(sandbox(&["root"]).stdout).unwrap().trim());

    let stage = upper.join(STAGE.trim_start_matches('/'));
    std::fs::create_dir_all(&stage).unwrap();
    for (name, source) in files {
        std::fs::copy(source, stage.join(name))
            .unwrap_or_else(|e| panic!("staging {}: {e}", source.display()));
    }
    let model = common::model_dir();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&model)
        .arg(stage.join("model"))
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "cp -a {}: {copied:?}",
        model.display()
    );
    let units = upper.join("etc/systemd/system");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(units.join("anomalyd-test-fail.service"), FAILING_UNIT).unwrap();
    boot()
}

/// dpkg as an administrator runs it, with no terminal to answer a prompt on (a conffile question
/// fails it); returns its output.
fn dpkg(args: &str) -> String {
    let (code, out) = inside(&format!(
        "DEBIAN_FRONTEND=noninteractive dpkg {args} </dev/null 2>&1"
    ));
    let hint = if out.contains("dependency problems") {
        "\n(the sandbox's root lacks a package the binaries now link: add it to BASE_PKGS in \
         ../shared/tools/systemd-sandbox: dpkg -i installs no dependencies)"
    } else {
        ""
    };
    assert_eq!(code, 0, "dpkg {args} failed:\n{out}{hint}");
    out
}

/// `systemctl show anomalyd.service` for these properties, one `Name=value` per line.
fn show(properties: &str) -> String {
    let args: String = properties.split(' ').map(|p| format!(" -p {p}")).collect();
    inside_ok(&format!("systemctl show anomalyd.service{args}"))
}

/// The documented way: `/usr/lib/anomalyd/fetch-model`, with the copy staged in the sandbox as
/// its source instead of the network.
fn fetch_model() {
    let out = inside_ok(&format!(
        "ANOMALYD_MODEL_SOURCE={STAGE}/model /usr/lib/anomalyd/fetch-model 2>&1"
    ));
    assert!(
        out.contains(&format!("installed all-MiniLM-L6-v2 into {MODEL}")),
        "fetch-model installs the model where the shipped config looks for it:\n{out}"
    );
}

/// Starts the service (returns after READY=1) and checks it answers on the system bus.
fn start_service() {
    inside_ok("systemctl start anomalyd.service");
    let state = show("ActiveState SubState");
    assert!(
        state.contains("ActiveState=active"),
        "anomalyd.service after start:\n{state}"
    );
    let (code, status) = inside("anomalyctl status");
    assert_eq!(
        code, 0,
        "anomalyctl status answers over the system bus:\n{status}"
    );
    assert!(status.contains("Events:"), "anomalyctl status:\n{status}");
}

/// How many records of the failing unit's failure there are.
fn failed_records() -> usize {
    query(&format!(
        "SELECT count(*) FROM records WHERE text = '{FAILED_TEXT}'"
    ))
    .first()
    .and_then(|n| n.trim().parse().ok())
    .unwrap_or(0)
}

/// Fails the test unit once more and waits for its record; returns that record's seq.
fn fail_a_unit_and_wait_for_its_record() -> u64 {
    let before = failed_records();
    inside("systemctl reset-failed anomalyd-test-fail.service; systemctl start anomalyd-test-fail.service");
    wait_until("the failed unit's record", Duration::from_secs(30), || {
        (failed_records() > before).then(String::new)
    });
    query(&format!(
        "SELECT max(seq) FROM records WHERE text = '{FAILED_TEXT}'"
    ))
    .first()
    .and_then(|s| s.trim().parse().ok())
    .expect("the record's seq")
}

fn exists(path: &str) -> bool {
    inside(&format!("test -e {path}")).0 == 0
}

fn verify_chain(extra: &str) -> String {
    let (code, out) = inside(&format!("anomalyctl verify --db {DB} {extra}"));
    assert_eq!(code, 0, "anomalyctl verify --db {DB} {extra}:\n{out}");
    assert!(out.starts_with("chain OK"), "anomalyctl verify:\n{out}");
    out
}

#[test]
fn installs_waits_for_the_model_runs_then_removes_and_purges() {
    let _serial = serial();
    let deb = package_under_test();
    let _guard = boot_with(&[("anomalyd.deb", &deb)]);

    // Install. postinst creates the user, loads the bus policy, enables and tries to start the
    // service, and says how the model arrives: packages do not download.
    let out = dpkg(&format!("-i {STAGE}/anomalyd.deb"));
    assert!(
        out.contains("the all-MiniLM-L6-v2 model is not installed yet")
            && out.contains("/usr/lib/anomalyd/fetch-model"),
        "postinst tells the administrator how to install the model:\n{out}"
    );
    let listed = inside_ok("dpkg-query -L anomalyd");
    for path in INSTALLED {
        assert!(
            listed.lines().any(|l| l == path),
            "the package installs {path}; dpkg -L anomalyd:\n{listed}"
        );
    }
    let conffiles = inside_ok("dpkg-query -W -f='${Conffiles}' anomalyd");
    assert!(
        conffiles.contains(CONFFILE),
        "{CONFFILE} is a conffile: {conffiles}"
    );
    inside_ok("getent passwd anomalyd && getent group anomalyd && getent group anomalyd-admin");
    let (code, verify) =
        inside("systemd-analyze verify /usr/lib/systemd/system/anomalyd.service 2>&1");
    assert_eq!(code, 0, "systemd-analyze verify with the drop-in: {verify}");
    // The man pages are where man finds them, generated from the binaries' own flags.
    let page = inside_ok("MANPAGER=cat MANWIDTH=100 man anomalyctl-verify 2>&1");
    assert!(
        page.contains("--journal-dir"),
        "man anomalyctl-verify:\n{page}"
    );
    for name in ["anomalyd", "anomalyctl", "anomalyd.toml"] {
        let page = inside_ok(&format!("MANPAGER=cat man {name} 2>&1 | head -n 5"));
        assert!(page.contains(name), "man {name}:\n{page}");
    }
    // The journal catalog was compiled: every MESSAGE_ID in config/anomalyd.catalog is known.
    let catalog = std::fs::read_to_string(root().join("config/anomalyd.catalog")).unwrap();
    let listed_catalog = inside_ok("journalctl --list-catalog");
    for id in catalog
        .lines()
        .filter_map(|l| l.strip_prefix("-- ")?.split_whitespace().next())
    {
        assert!(
            listed_catalog.contains(id),
            "journalctl --list-catalog knows {id} after the install:\n{listed_catalog}"
        );
    }

    // No model yet: systemd skipped the start postinst asked for. The unit is enabled, inactive
    // and not failed (no exit 78, no restart loop), and its status says why.
    let state = show("UnitFileState ActiveState Result NRestarts");
    for expected in [
        "UnitFileState=enabled",
        "ActiveState=inactive",
        "Result=success",
        "NRestarts=0",
    ] {
        assert!(
            state.contains(expected),
            "without the model, {expected:?} in:\n{state}"
        );
    }
    let (_, status) = inside("systemctl status anomalyd.service --no-pager --full");
    assert!(
        status.contains(&format!(
            "ConditionPathExists={MODEL}/model.safetensors was not met"
        )),
        "systemctl status names the missing model:\n{status}"
    );
    inside_ok("systemctl start anomalyd.service");
    assert!(
        show("ActiveState").contains("ActiveState=inactive"),
        "a start without the model is skipped"
    );

    // The documented step, then the service runs and records a unit that really fails.
    fetch_model();
    start_service();
    let show_user = show("User");
    assert!(show_user.contains("User=anomalyd"), "{show_user}");
    let seq = fail_a_unit_and_wait_for_its_record();
    let first = inside_ok(&format!(
        "sqlite3 -readonly {DB} \"SELECT text FROM records WHERE seq = {seq}\""
    ));
    assert_eq!(first.trim(), FAILED_TEXT);
    verify_chain("");

    // Remove: prerm stops the service while its binary is still there (a clean stop record),
    // the files go, the configuration and the state stay.
    dpkg("-r anomalyd");
    let state = show("ActiveState");
    assert!(
        state.contains("ActiveState=inactive"),
        "stopped by dpkg -r:\n{state}"
    );
    let last = query("SELECT kind FROM records ORDER BY seq DESC LIMIT 1");
    assert_eq!(
        last.first().map(|s| s.trim()),
        Some("stop"),
        "the daemon stopped cleanly (drained, stop record written) before its files went: {last:?}"
    );
    for path in INSTALLED.iter().filter(|p| **p != CONFFILE) {
        assert!(!exists(path), "dpkg -r removes {path}");
    }
    assert!(exists(CONFFILE), "dpkg -r keeps the conffile {CONFFILE}");
    assert!(exists(DB), "dpkg -r keeps the audit chain {DB}");
    assert!(
        exists(&format!("{MODEL}/model.safetensors")),
        "dpkg -r keeps the model"
    );
    let status = inside_ok("dpkg-query -W -f='${db:Status-Abbrev}' anomalyd");
    assert_eq!(
        status.trim(),
        "rc",
        "removed, configuration files kept: {status:?}"
    );

    // Purge: the conffile and its directory, the state directory (chain, baseline, model) go.
    // The system user stays (Debian practice: its uid may still own files elsewhere).
    dpkg("--purge anomalyd");
    assert!(
        !exists("/etc/anomalyd"),
        "dpkg --purge removes /etc/anomalyd"
    );
    assert!(!exists(STATE), "dpkg --purge removes {STATE}");
    for link in [
        "/etc/systemd/system/multi-user.target.wants/anomalyd.service",
        "/etc/systemd/system/anomalyd.service",
    ] {
        assert!(
            !exists(link),
            "dpkg --purge leaves no {link} (enablement or mask)"
        );
    }
    let (code, out) = inside("dpkg-query -W anomalyd 2>&1");
    assert_ne!(
        code, 0,
        "dpkg knows nothing of anomalyd after the purge: {out}"
    );
    inside_ok("getent passwd anomalyd");
}

#[test]
fn upgrade_keeps_the_operators_conffile_and_continues_the_chain() {
    let _serial = serial();
    let current = package_under_test();
    let current_version = deb_field(&current, "Version");
    let next_version = format!("{current_version}+test1");
    let next = newer_package(&current, &next_version);
    assert_eq!(deb_field(&next, "Version"), next_version);
    let _guard = boot_with(&[("current.deb", &current), ("next.deb", &next)]);

    dpkg(&format!("-i {STAGE}/current.deb"));
    fetch_model();
    start_service();
    let failed_seq = fail_a_unit_and_wait_for_its_record();

    // The operator's change, in a conffile the next package ships unchanged.
    const LOCAL: &str = "# operator: kept across upgrades";
    inside_ok(&format!("echo '{LOCAL}' >> {CONFFILE}"));
    let pid_before = show("MainPID");
    let head_before = inside_ok(&format!("anomalyctl head --db {DB}"))
        .trim()
        .to_owned();
    assert!(
        head_before.contains(':'),
        "anomalyctl head prints SEQ:HEX: {head_before}"
    );

    // Upgrade under the running daemon, with no terminal: a conffile prompt would fail dpkg.
    let out = dpkg(&format!("-i {STAGE}/next.deb"));
    assert!(
        !out.contains("Configuration file"),
        "an unchanged conffile with a local change is kept without a question:\n{out}"
    );
    let version = inside_ok("dpkg-query -W -f='${Version}' anomalyd");
    assert_eq!(version.trim(), next_version);
    let conffile = inside_ok(&format!("cat {CONFFILE}"));
    assert_eq!(
        conffile.lines().next_back(),
        Some(LOCAL),
        "the operator's line is still in {CONFFILE}"
    );
    let etc = inside_ok("ls -A /etc/anomalyd");
    assert_eq!(
        etc.trim(),
        "anomalyd.toml",
        "no .dpkg-dist/.dpkg-new beside it: {etc}"
    );

    // postinst restarted the daemon on the new package (restart-after-upgrade).
    let state = show("ActiveState MainPID");
    assert!(
        state.contains("ActiveState=active"),
        "running after the upgrade:\n{state}"
    );
    assert_ne!(
        state.lines().find(|l| l.starts_with("MainPID=")),
        pid_before.lines().find(|l| l.starts_with("MainPID=")),
        "restarted by the upgrade (a new main process)"
    );
    start_service();

    // The same chain, continued: the old head is in it, the old records are where they were, a
    // new failure is recorded after them, and there is one genesis and a start per daemon run.
    let new_seq = fail_a_unit_and_wait_for_its_record();
    let head_seq: u64 = head_before.split(':').next().unwrap().parse().unwrap();
    assert!(
        new_seq > head_seq,
        "the new record ({new_seq}) follows the head before the upgrade ({head_before})"
    );
    let old = inside_ok(&format!(
        "sqlite3 -readonly {DB} \"SELECT text FROM records WHERE seq = {failed_seq}\""
    ));
    assert_eq!(
        old.trim(),
        FAILED_TEXT,
        "the record from before the upgrade is intact"
    );
    verify_chain(&format!("--expect-head {head_before}"));
    let kinds = query(
        "SELECT kind || '=' || count(*) FROM records WHERE kind IN ('genesis', 'start', 'stop') \
         GROUP BY kind ORDER BY kind",
    );
    assert_eq!(
        kinds,
        ["genesis=1", "start=2", "stop=1"],
        "one chain across the upgrade: one genesis, a start per daemon run, the old run's stop"
    );
}
