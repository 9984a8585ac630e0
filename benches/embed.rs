//! MiniLM-L6 on the CPU: events/s at batch 1, 64 and 256 over the 2000 message texts of
//! `../shared/data/loghub/BGL_2k.log`, the effective rate through the embedding cache on the same
//! stream, the GEMM shapes of one layer through each product the CPU runs (OpenBLAS, ours on
//! packed fp32 weights, bf16), and peak RSS. The batch rates are measured for fp32 and, on a CPU
//! with AVX512-BF16, for bf16, alternately in the same run; `batch_N` in the JSON is fp32 (the
//! peer script's `ours`), `fp32_batch_N` and `bf16_batch_N` each path. Like the daemon, it runs itself again with OPENBLAS_CORETYPE set
//! where OpenBLAS's detection fell back to its generic kernels.
//!
//!   cargo bench --bench embed -- [--threads N] [--model DIR] [--json FILE]
//!
//! `benches/embed-compare` runs this and sentence-transformers side by side and prints the ratios.

use std::path::PathBuf;
use std::time::Instant;

use anomalyd::config::Precision;
use anomalyd::embed::{Embedder, EmbeddingCache, MiniLm};
use anyhow::Context;

fn main() -> anyhow::Result<()> {
    // As the daemon does: OpenBLAS's kernels for this CPU where its detection fell back.
    anomalyd::embed::blas::exec_with_better_core("embed bench");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut threads = 2usize;
    let mut model = root.join(anomalyd::emulate::PROJECT_MODEL_DIR);
    let mut json_out: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().context("--threads N")?.parse()?,
            "--model" => model = args.next().context("--model DIR")?.into(),
            "--json" => json_out = Some(args.next().context("--json FILE")?.into()),
            _ => {} // cargo bench passes --bench
        }
    }
    let log = root.join("../shared/data/loghub/BGL_2k.log");
    let texts = bgl_messages(&log)?;
    let distinct = texts.iter().collect::<std::collections::HashSet<_>>().len();
    println!(
        "{} texts ({distinct} distinct) from {}, {threads} threads",
        texts.len(),
        log.display()
    );

    let embedder = MiniLm::cpu(&model, threads, Precision::Fp32)?;
    let tokens: usize = texts
        .iter()
        .map(|t| embedder.token_ids(t).map(|ids| ids.len()))
        .sum::<Result<usize, _>>()?;
    println!(
        "tokens per text: {:.1} on average",
        tokens as f64 / texts.len() as f64
    );
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();

    let mut results = serde_json::Map::new();
    // `batch_N` is fp32 (the first path, what the peer script compares); bf16 where the CPU has
    // it, in the same run.
    let default = "fp32";
    let mut paths = vec![("fp32", embedder)];
    if anomalyd::embed::bf16::available() {
        paths.push(("bf16", MiniLm::cpu(&model, threads, Precision::Bf16)?));
    }
    for (_, path) in &mut paths {
        path.embed(&refs[..64])?; // warm-up: pages the weights in, sizes the allocator
    }
    for batch in [1usize, 64, 256] {
        // The paths alternate per batch size, so a noisy neighbour slows both alike.
        for (name, path) in &mut paths {
            let start = Instant::now();
            for chunk in refs.chunks(batch) {
                path.embed(chunk)?;
            }
            let rate = refs.len() as f64 / start.elapsed().as_secs_f64();
            println!("batch {batch:>4}: {rate:8.1} events/s ({name}, no cache)");
            results.insert(format!("{name}_batch_{batch}"), rate.into());
            if *name == default {
                results.insert(format!("batch_{batch}"), rate.into());
            }
        }
    }
    // The cache pass runs on the default path; the bf16 model is dropped first.
    let (_, mut embedder) = paths.swap_remove(0);
    drop(paths);

    let mut cache = EmbeddingCache::new(16384);
    let start = Instant::now();
    for chunk in refs.chunks(64) {
        cache.embed(&mut embedder, chunk)?;
    }
    let rate = refs.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "batch   64: {rate:8.1} events/s with the cache (hit rate {:.1}%, first pass over the stream)",
        cache.hit_rate() * 100.0
    );
    results.insert("cached_batch_64".into(), rate.into());
    results.insert("cache_hit_rate".into(), cache.hit_rate().into());

    gemm_shapes(&mut results);

    let rss = peak_rss_kib()?;
    println!("peak RSS: {:.1} MiB", rss as f64 / 1024.0);
    results.insert("peak_rss_kib".into(), rss.into());
    results.insert("threads".into(), threads.into());
    if let Some(path) = json_out {
        std::fs::write(&path, serde_json::Value::Object(results).to_string())?;
    }
    Ok(())
}

/// GFLOP/s of one core on the four products of one encoder layer, for the share of a 64-text
/// batch one of two workers gets (32 texts of 18 tokens: 576 rows): the ceiling of the CPU path.
/// Each product the CPU can run, measured alternately on the same operands: OpenBLAS, ours on
/// packed fp32 weights (AVX-512F, or AVX2 and FMA), and bf16 (rounding the activations included, as in a pass).
/// `gemm_gflops_per_core` is the fp32 product a pass uses here.
fn gemm_shapes(results: &mut serde_json::Map<String, serde_json::Value>) {
    use anomalyd::embed::{bf16, blas, fp32};
    blas::set_threads(1);
    let rows = 32 * 18;
    let kinds: Vec<&str> = ["openblas", "fp32", "bf16"]
        .into_iter()
        .filter(|kind| match *kind {
            "fp32" => fp32::available(),
            "bf16" => bf16::available(),
            _ => true,
        })
        .collect();
    let mut totals = vec![(0.0f64, 0.0f64); kinds.len()];
    for (name, n, k) in [
        ("qkv", 1152, 384),
        ("attention_out", 384, 384),
        ("intermediate", 1536, 384),
        ("output", 384, 1536),
    ] {
        let a: Vec<f32> = (0..rows * k)
            .map(|i| (i % 97) as f32 / 97.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..n * k).map(|i| (i % 89) as f32 / 89.0 - 0.5).collect();
        let packed32 = fp32::available().then(|| fp32::PackedWeight::pack(&b, n, k));
        let packed16 = bf16::available().then(|| bf16::PackedWeight::pack(&b, n, k));
        let mut c = vec![0.0f32; rows * n];
        let reps = 20;
        let mut line = format!("gemm {name:>14} {rows}×{k}·{k}×{n}:");
        for (kind, total) in kinds.iter().zip(totals.iter_mut()) {
            let start = Instant::now();
            for _ in 0..reps {
                match *kind {
                    "fp32" => {
                        let w = packed32.as_ref().expect("packed when available");
                        fp32::gemm_nt(&a, rows, w, 0..n, &mut c);
                    }
                    "bf16" => {
                        let w = packed16.as_ref().expect("packed when available");
                        let left = bf16::PackedRows::pack(&a, rows, k);
                        bf16::gemm_nt(&left, w, 0..n, &mut c);
                    }
                    _ => blas::gemm_nt(rows, n, k, &a, &b, 0.0, &mut c),
                }
            }
            let secs = start.elapsed().as_secs_f64();
            let flops = 2.0 * (rows * n * k) as f64 * reps as f64;
            total.0 += flops;
            total.1 += secs;
            line.push_str(&format!(" {kind} {:6.1}", flops / secs / 1e9));
        }
        println!("{line} GFLOP/s");
    }
    let mut line = String::from("gemm one layer, one core:");
    for (kind, (flops, secs)) in kinds.iter().zip(&totals) {
        let rate = flops / secs / 1e9;
        line.push_str(&format!(" {kind} {rate:.1}"));
        results.insert(format!("gemm_{kind}_gflops_per_core"), rate.into());
    }
    println!("{line} GFLOP/s");
    let used = if fp32::available() {
        "fp32"
    } else {
        "openblas"
    };
    let rate = results[&format!("gemm_{used}_gflops_per_core")].clone();
    results.insert("gemm_gflops_per_core".into(), rate);
}

/// The message of every BGL line: what follows its first nine fields.
fn bgl_messages(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.splitn(10, ' ').nth(9).unwrap_or("").trim().to_owned())
        .collect())
}

fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("VmHWM not in /proc/self/status")
}
