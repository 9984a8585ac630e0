//! The GPU path on a machine without a GPU, as CI has it: every kernel compiles through the
//! daemon's own NVRTC path to CUBIN for sm_80 and sm_90 with no warning (NVRTC from
//! `scripts/fetch-nvrtc`, which `scripts/setup` runs); `--device auto` falls back to the CPU and
//! says why; `--device cuda` fails and says why. What needs a GPU (the golden vectors through
//! CUDA, throughput) is `scripts/gpu-check` on a GPU machine.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Where `scripts/fetch-nvrtc` puts NVRTC.
fn nvrtc_lib_dir() -> PathBuf {
    let prefix = std::env::var_os("ANOMALYD_NVRTC_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/anomalyd-nvrtc"));
    let lib = prefix.join("lib64");
    assert!(
        lib.join("libnvrtc.so.13").exists(),
        "NVRTC is not in {}: run scripts/setup (or scripts/fetch-nvrtc)",
        lib.display()
    );
    lib
}

/// The daemon binary with NVRTC on its library path (and no driver: this machine has no GPU).
fn anomalyd() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anomalyd"));
    let mut path = nvrtc_lib_dir().into_os_string();
    if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
        path.push(":");
        path.push(old);
    }
    command.env("LD_LIBRARY_PATH", path);
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[test]
fn every_kernel_compiles_to_cubin_for_sm80_and_sm90_without_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let out = anomalyd()
        .args(["kernels", "--arch", "sm_80", "--arch", "sm_90", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("NVRTC 13."), "{stdout}");
    let expected = [
        ("embed_layernorm", "embed_layernorm"),
        ("bias_gelu", "bias_act"),
        ("residual_layernorm", "residual_layernorm"),
        ("attention", "attention_short"),
        ("mean_pool", "mean_pool_normalize"),
    ];
    for arch in ["sm_80", "sm_90"] {
        for (file, entry_point) in expected {
            let path = tmp.path().join(format!("{file}-{arch}.cubin"));
            let cubin = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                cubin.starts_with(b"\x7fELF"),
                "{} is not an ELF CUBIN",
                path.display()
            );
            assert!(
                cubin
                    .windows(entry_point.len())
                    .any(|w| w == entry_point.as_bytes()),
                "{} lacks {entry_point}",
                path.display()
            );
            assert!(
                stdout.contains(&format!("kernels/{file}.cu {arch}: ")),
                "{stdout}"
            );
        }
    }
    // Every .cu file in kernels/ is one the daemon compiles: none is left out of the check.
    let on_disk = std::fs::read_dir(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("kernels"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".cu"))
        .count();
    assert_eq!(on_disk, expected.len());
}

#[test]
fn a_kernel_warning_or_error_fails_naming_the_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let warns = tmp.path().join("warns.cu");
    std::fs::write(
        &warns,
        "extern \"C\" __global__ void k(float* y) {\n  int unused = 3;\n  y[0] = 1.0f;\n}\n",
    )
    .unwrap();
    let out = anomalyd()
        .args(["kernels", "--arch", "sm_90", "--source"])
        .arg(&warns)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("warns.cu(2)")
            && stderr.contains("warning")
            && stderr.contains("refused")
            && stderr.contains("sm_90"),
        "{stderr}"
    );

    let broken = tmp.path().join("broken.cu");
    std::fs::write(
        &broken,
        "extern \"C\" __global__ void k(float* y) {\n  y[0] = ;\n}\n",
    )
    .unwrap();
    let out = anomalyd()
        .args(["kernels", "--arch", "sm_80", "--source"])
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("broken.cu(2)") && stderr.contains("does not compile for sm_80"),
        "{stderr}"
    );

    let out = anomalyd()
        .args(["kernels", "--arch", "compute_90"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("compute_90"),
        "{}",
        describe(&out)
    );
}

fn embed(device: &str, state_dir: &std::path::Path) -> Output {
    let mut child = anomalyd()
        .args(["--log", "stderr", "--model"])
        .arg(common::model_dir())
        .arg("--state-dir")
        .arg(state_dir)
        .args(["embed", "--device", device])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.take().unwrap(),
        "systemd unit nginx.service ActiveState=failed"
    )
    .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn device_auto_without_a_gpu_embeds_on_the_cpu_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let out = embed("auto", tmp.path());
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stderr.contains("no GPU used: embedding on the CPU") && stderr.contains("libcuda"),
        "{stderr}"
    );
    assert!(stderr.contains("on cpu ("), "{stderr}");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let vector: Vec<f32> = serde_json::from_value(line["embedding"].clone()).unwrap();
    assert_eq!(vector.len(), 384);
}

#[test]
fn device_cuda_without_a_gpu_fails_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let out = embed("cuda", tmp.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    assert!(
        stderr.contains("GPU embedding is required")
            && stderr.contains("libcuda (the NVIDIA driver)")
            && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "nothing is embedded elsewhere instead"
    );
}

#[test]
fn score_file_with_a_required_gpu_index_and_no_gpu_exits_78_saying_why_once() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("anomalyd.toml");
    std::fs::write(&config, "[gpu]\nindex = \"gpu\"\n").unwrap();
    let lines = tmp.path().join("lines.txt");
    std::fs::write(&lines, "systemd unit a.service ActiveState=active\n").unwrap();
    let out = anomalyd()
        .arg("--config")
        .arg(&config)
        .args(["--log", "stderr", "--model"])
        .arg(common::model_dir())
        .arg("--state-dir")
        .arg(tmp.path())
        .arg("score-file")
        .arg(&lines)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    // The same setup error as the daemon's start-up: fixed in the config, so EX_CONFIG.
    assert_eq!(out.status.code(), Some(78), "{}", describe(&out));
    let reason = "gpu.index: \"gpu\" cannot be honoured";
    assert_eq!(stderr.matches(reason).count(), 1, "{stderr}");
    assert!(out.stdout.is_empty(), "no line is scored elsewhere instead");
}
