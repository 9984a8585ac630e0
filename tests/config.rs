//! Configuration: the shipped file, one failing case per validation rule, unknown keys, and the
//! binary's exit status 78 (EX_CONFIG).

use std::path::PathBuf;
use std::process::Command;

use anomalyd::config::{Config, ConfigError, Overrides, RawConfig};

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/anomalyd.toml")
}

#[test]
fn shipped_file_validates_and_states_every_default() {
    let text = std::fs::read_to_string(shipped()).unwrap();
    let raw = RawConfig::parse(&text, "config/anomalyd.toml").unwrap();
    assert_eq!(
        raw,
        RawConfig::default(),
        "config/anomalyd.toml must hold exactly the built-in defaults"
    );
    anomalyd::load_config(Some(&shipped()), &Overrides::default()).unwrap();
}

/// Validates `toml` as `--check-config` does (the file's rules, then the detector's own checks)
/// and returns the error message, which must name the origin.
fn error_of(toml: &str) -> String {
    let checked = Config::from_toml(toml, "test.toml")
        .and_then(|config| anomalyd::detect::check(&config).map(|()| config));
    match checked {
        Ok(_) => panic!("expected {toml:?} to be rejected"),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("test.toml: "),
                "error names the file: {msg}"
            );
            msg
        }
    }
}

fn assert_rule(toml: &str, expected: &str) {
    let msg = error_of(toml);
    assert!(msg.contains(expected), "expected {expected:?} in {msg:?}");
}

#[test]
fn each_rule_names_the_key_the_value_and_the_rule() {
    let cases: &[(&str, &str)] = &[
        (
            "[metrics]\nlisten = \"localhost:9464\"",
            "metrics.listen = \"localhost:9464\": must be an IP address and port",
        ),
        (
            "[metrics]\ntextfile = \"anomalyd.prom\"",
            "metrics.textfile = \"anomalyd.prom\": must be an absolute path ending in .prom",
        ),
        (
            "[metrics]\ntextfile = \"/var/lib/prometheus/node-exporter/anomalyd.txt\"",
            "must be an absolute path ending in .prom",
        ),
        (
            "[metrics]\ntextfile_interval_s = 0",
            "metrics.textfile_interval_s = 0: must be between 1 and 3600",
        ),
        (
            "[daemon]\nstate_dir = \"\"",
            "daemon.state_dir = \"\": must name a directory",
        ),
        (
            "[daemon]\nlog = \"syslog\"",
            "daemon.log = \"syslog\": must be one of auto, journald, stderr",
        ),
        (
            "[daemon]\nlog_level = \"info,,=[\"",
            "daemon.log_level = \"info,,=[\": must be a tracing filter",
        ),
        (
            "[bus]\nkind = \"tcp\"",
            "bus.kind = \"tcp\": must be one of system, session, address",
        ),
        (
            "[bus]\nkind = \"address\"\naddress = \"nowhere\"",
            "bus.address = \"nowhere\": must be a D-Bus address",
        ),
        (
            "[bus]\nkind = \"system\"\naddress = \"unix:path=/x\"",
            "bus.address = \"unix:path=/x\": must be empty unless bus.kind = \"address\"",
        ),
        (
            "[sources]\nqueue_capacity = 1",
            "sources.queue_capacity = 1: must be between 16 and 1048576",
        ),
        (
            "[sources]\nlookup_timeout_ms = 0",
            "sources.lookup_timeout_ms = 0: must be between 1 and 10000",
        ),
        (
            "[[sources.custom]]\nrule = \"type='signal',,\"",
            "sources.custom[0].rule = \"type='signal',,\": must be a D-Bus match rule",
        ),
        (
            "[[sources.custom]]\nrule = \"type='method_call',interface='a.b'\"",
            "sources.custom[0].rule = \"type='method_call',interface='a.b'\": must select signals",
        ),
        (
            "[[sources.custom]]\nrule = \"type='signal'\"",
            "sources.custom[0].rule = \"type='signal'\": must name a sender= or an interface=",
        ),
        (
            "[sources]\nmax_signal_bytes = 100",
            "sources.max_signal_bytes = 100: must be between 1024 and 67108864",
        ),
        (
            "[render]\nvolatile_keys = [\"*pid\", \"\"]",
            "render.volatile_keys[1] = \"\": must not be empty",
        ),
        (
            "[[render.volatile_values]]\npattern = \"run-(\"\nreplace = \"x\"",
            "render.volatile_values[0].pattern = \"run-(\": must be a regular expression",
        ),
        (
            "[[render.volatile_values]]\npattern = \"x\"",
            "missing field `replace`",
        ),
        (
            "[embedder]\nkind = \"word2vec\"",
            "embedder.kind = \"word2vec\": must be minilm or hashing",
        ),
        (
            "[embedder]\nbatch_size = 0",
            "embedder.batch_size = 0: must be between 1 and 4096",
        ),
        (
            "[embedder]\nbatch_max_wait_ms = -1",
            "embedder.batch_max_wait_ms = -1: must be between 0 and 10000",
        ),
        (
            "[embedder]\nprecision = \"int8\"",
            "embedder.precision = \"int8\": must be auto, fp32 or bf16",
        ),
        (
            "[detector]\nk = 0",
            "detector.k = 0: must be between 1 and 1024",
        ),
        (
            "[detector]\nk = 1025",
            "detector.k = 1025: must be between 1 and 1024",
        ),
        (
            "[detector]\nthreshold = 0.0",
            "detector.threshold = 0: must be greater than 0 and at most 2",
        ),
        (
            "[detector]\nthreshold = nan",
            "detector.threshold = NaN: must be greater than 0 and at most 2",
        ),
        (
            "[detector]\nwarmup_events = -5",
            "detector.warmup_events = -5: must be between 0 and 10000000",
        ),
        (
            "[detector]\nindex = \"NoSuchIndex\"",
            "detector.index = \"NoSuchIndex\": FAISS cannot build it",
        ),
        (
            "[detector]\nnprobe = 0",
            "detector.nprobe = 0: must be between 1 and 2048",
        ),
        (
            "[detector]\ntrain_min_vectors = 10",
            "detector.train_min_vectors = 10: must be between 1000 and 100000000",
        ),
        (
            "[detector]\nretrain_growth = 1.0",
            "detector.retrain_growth = 1: must be between 1.1 and 100",
        ),
        (
            "[detector]\nperiodic_hours = 1",
            "detector.periodic_hours = 1: must be 0 (never) or between 2 and 24",
        ),
        (
            "[detector]\nfailure_repeats = 1",
            "detector.failure_repeats = 1: must be 0 (never) or between 2 and 1000",
        ),
        (
            "[detector]\nfailure_repeat_s = 0",
            "detector.failure_repeat_s = 0: must be between 1 and 86400",
        ),
        (
            "[detector]\nfollow_on_s = 3601",
            "detector.follow_on_s = 3601: must be between 0 and 3600",
        ),
        (
            "[detector]\nprogram_ceiling = 2.5",
            "detector.program_ceiling = 2.5: must be 0 (no program thresholds) or greater than 0 and at most 2",
        ),
        (
            "[detector]\nprogram_ceiling = -0.1",
            "detector.program_ceiling = -0.1: must be 0 (no program thresholds) or greater than 0 and at most 2",
        ),
        (
            "[detector]\nretrain_drift = 0.1",
            "detector.retrain_drift = 0.1: must be 0 (off) or between 0.2 and 1",
        ),
        (
            "[[detector.suppress]]\nname = \"x\"\nsource = \"kernel\"\npattern = \"a\"",
            "detector.suppress[0].source = \"kernel\": must be one of systemd, networkmanager",
        ),
        (
            "[[detector.suppress]]\nname = \"x\"\npattern = \"(\"",
            "detector.suppress[0].pattern = \"(\": not a regular expression",
        ),
        (
            "[[detector.suppress]]\nname = \"x\"\npattern = \"a\"\nuntil = 2027-01-01T00:00:00",
            "detector.suppress[0].until = 2027-01-01T00:00:00: must be a full date-time with an offset",
        ),
        (
            "[[detector.suppress]]\nname = \" \"\npattern = \"a\"",
            "detector.suppress[0].name = \" \": must not be empty",
        ),
        ("[audit]\ndb = \"\"", "audit.db = \"\": must name a file"),
        (
            "[audit]\nsynchronous = \"sometimes\"",
            "audit.synchronous = \"sometimes\": must be one of off, normal, full, extra",
        ),
        (
            "[api]\nbus_name = \"not a name\"",
            "api.bus_name = \"not a name\": must be a well-known D-Bus name",
        ),
        (
            "[numa]\nbind = \"nearest\"",
            "numa.bind = \"nearest\": must be \"auto\", \"off\" or a NUMA node number",
        ),
        (
            "[numa]\nbind = -1",
            "numa.bind = -1: must be between 0 and 1023",
        ),
        (
            "[gpu]\ndevice = \"cuda\"",
            "gpu.device = \"cuda\": must be \"auto\", \"off\" or a CUDA device number",
        ),
        (
            "[gpu]\ndevice = 64",
            "gpu.device = 64: must be between 0 and 63",
        ),
        (
            "[gpu]\ndevices = [0, 64]",
            "gpu.devices = 64: must be between 0 and 63",
        ),
        (
            "[gpu]\ndevices = [1, 1]",
            "gpu.devices = [1, 1]: names a device twice",
        ),
        (
            "[gpu]\ndevice = 0\ndevices = [0, 1]",
            "gpu.devices = [0, 1]: is set, so gpu.device must stay \"auto\"",
        ),
        (
            "[gpu]\nstreams = 0",
            "gpu.streams = 0: must be between 1 and 8",
        ),
        (
            "[gpu]\nindex = \"cuda\"",
            "gpu.index = \"cuda\": must be \"auto\", \"gpu\" or \"cpu\"",
        ),
        (
            "[gpu]\ndevice = \"off\"\nindex = \"gpu\"",
            "gpu.index = \"gpu\": needs a GPU, and gpu.device = \"off\"",
        ),
        (
            "[gpu]\ndevice = \"off\"\nindex = \"gpuu\"",
            "gpu.index = \"gpuu\": must be \"auto\", \"gpu\" or \"cpu\"",
        ),
        (
            "[gpu]\nindex_temp_memory_mib = 8",
            "gpu.index_temp_memory_mib = 8: must be between 16 and 65536",
        ),
        (
            "[gpu]\nindex = \"gpu\"\n[detector]\nk = 600",
            "detector.k = 600: with gpu.index = \"gpu\": the detector asks for 2400 candidates per query (4 per neighbour), and FAISS on a GPU selects at most 2048: use k ≤ 512",
        ),
        (
            "[gpu]\nindex = \"gpu\"\n[detector]\nindex = \"IVF1024,PQ32x4\"",
            "detector.index = \"IVF1024,PQ32x4\": with gpu.index = \"gpu\": PQ32x4: FAISS's GPU product quantiser takes only 8-bit codes, not 4",
        ),
        (
            "[gpu]\nindex = \"gpu\"\n[detector]\nindex = \"IVF1024,SQ8,RFlat\"",
            "detector.index = \"IVF1024,SQ8,RFlat\": with gpu.index = \"gpu\": RFlat (re-ranking) has no GPU implementation",
        ),
    ];
    for (toml, expected) in cases {
        assert_rule(toml, expected);
    }
}

#[test]
fn unknown_keys_and_sections_are_rejected_by_name() {
    assert!(error_of("[detector]\nkk = 3").contains("unknown field `kk`"));
    assert!(error_of("[detectors]\nk = 3").contains("unknown field `detectors`"));
    assert!(error_of("[detector]\nk = \"five\"").contains("invalid type"));
}

#[test]
fn overrides_win_and_obey_the_same_rules() {
    let config = Config::load(
        Some(&shipped()),
        &Overrides {
            bus: Some("unix:path=/tmp/test-bus".into()),
            state_dir: Some("/tmp/anomalyd-state".into()),
            log: Some("stderr".into()),
            model: None,
        },
    )
    .unwrap();
    assert_eq!(
        config.bus,
        anomalyd::config::BusTarget::Address("unix:path=/tmp/test-bus".into())
    );
    assert_eq!(
        config.audit_db_path(),
        PathBuf::from("/tmp/anomalyd-state/audit.sqlite")
    );
    let bad = Config::load(
        Some(&shipped()),
        &Overrides {
            bus: Some("nowhere".into()),
            ..Default::default()
        },
    );
    assert!(
        matches!(bad, Err(ConfigError::Invalid { ref key, .. }) if key == "bus.address"),
        "{bad:?}"
    );
}

#[test]
fn the_binary_exits_78_on_any_config_error_and_0_when_valid() {
    let bin = env!("CARGO_BIN_EXE_anomalyd");
    let ok = Command::new(bin)
        .args(["--check-config", "--config"])
        .arg(shipped())
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[detector]\nk = 0\n").unwrap();
    for args in [vec!["--check-config"], vec![]] {
        let out = Command::new(bin)
            .args(&args)
            .arg("--config")
            .arg(&bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(78), "args {args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("detector.k = 0: must be between 1 and 1024"),
            "{stderr}"
        );
    }
    let missing = Command::new(bin)
        .args(["--check-config", "--config", "/nonexistent/anomalyd.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(78));
    let bad_flag = Command::new(bin)
        .args(["--check-config", "--config"])
        .arg(shipped())
        .args(["--bus", "nowhere"])
        .output()
        .unwrap();
    assert_eq!(bad_flag.status.code(), Some(78));
}
