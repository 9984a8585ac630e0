//! The search-index benchmark: exact `IDMap2,Flat` against `IDMap2,IVF{nlist},PQ{m}` (and OPQ
//! and refined variants) on clustered 384-d unit vectors, in the same process, so every figure is
//! also a ratio to flat's. `…,RFlat` variants re-rank `k × k-factor` PQ candidates exactly, which is
//! what the detector does with its kept vectors (`CANDIDATE_FACTOR` = 4 in src/detect/mod.rs).
//! Results and their reading: benches/README.md, "Search index".
//!
//! Usage: cargo bench --bench index -- [--quick] [--sizes 1000,10000,...]
//!                    [--variants "IVF{nlist},PQ32np;OPQ32,IVF{nlist},PQ32np;IVF{nlist},PQ32np,RFlat"]
//!                    [--k-factor 4 (k_factor_rf for RFlat variants)]
//!                    [--nprobes 1,4,8,16,32,64] [--nq 2048] [--batch 256] [--k 10]
//!                    [--threads N] [--label NAME] [--json FILE] [--seed S] [--dim D]
//!                    [--centres C] [--sigma S] [--max-train T] [--min-time SECS] [--tmpdir DIR]
//!                    [--gpu DEVICE (build with --features faiss-gpu: each trained index is also
//!                     searched through the daemon's GPU mirror; q/s and top-k agreement)]
//!
//! `--threads N` re-executes the binary with OMP_NUM_THREADS=N and OPENBLAS_NUM_THREADS=N
//! (OpenBLAS reads its thread count at load time) and also calls omp_set_num_threads(N).
//! nprobe is set with `faiss::index::autotune::ParameterSpace::set_index_parameter(&idx, "nprobe", v)`,
//! which FAISS forwards through IndexIDMap2 / IndexPreTransform down to the IndexIVF; it is read
//! back through the C API to verify.

use faiss::index::autotune::ParameterSpace;
use faiss::index::IndexImpl;
use faiss::{index_factory, write_index, Idx, Index, MetricType};
use std::fmt::Write as _;
use std::os::raw::{c_int, c_void};
use std::time::Instant;

// ---- a few extra C symbols (all already linked in via faiss-sys: libgomp and libfaiss_c) ----
extern "C" {
    fn omp_set_num_threads(n: c_int);
    fn omp_get_max_threads() -> c_int;
    fn faiss_IndexIDMap2_cast(idx: *mut c_void) -> *mut c_void;
    fn faiss_IndexIDMap2_sub_index(idx: *mut c_void) -> *mut c_void;
    fn faiss_IndexPreTransform_cast(idx: *mut c_void) -> *mut c_void;
    fn faiss_IndexPreTransform_index(idx: *const c_void) -> *mut c_void;
    fn faiss_IndexIVF_cast(idx: *mut c_void) -> *mut c_void;
    fn faiss_IndexIVF_nprobe(idx: *const c_void) -> usize;
}

/// Read back nprobe of the IVF index inside IDMap2[/PreTransform] (None if not found).
fn read_nprobe(index: &IndexImpl) -> Option<usize> {
    // SAFETY: every pointer comes from FAISS's own casts of a live index (null when the cast
    // does not apply, checked before use); nothing is freed or kept.
    unsafe {
        let mut p = index.inner_ptr() as *mut c_void;
        let m = faiss_IndexIDMap2_cast(p);
        if !m.is_null() {
            p = faiss_IndexIDMap2_sub_index(m);
        }
        let pt = faiss_IndexPreTransform_cast(p);
        if !pt.is_null() {
            p = faiss_IndexPreTransform_index(pt);
        }
        let ivf = faiss_IndexIVF_cast(p);
        if ivf.is_null() {
            None
        } else {
            Some(faiss_IndexIVF_nprobe(ivf))
        }
    }
}

// ---------------------------------- RNG ----------------------------------
#[derive(Clone)]
struct SplitMix64(u64);
impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// uniform in (0,1]
    fn next_f64(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64)
    }
    /// fill with standard normals (Box-Muller)
    fn fill_gauss(&mut self, out: &mut [f32]) {
        let mut i = 0;
        while i < out.len() {
            let u1 = self.next_f64();
            let u2 = self.next_f64();
            let r = (-2.0 * u1.ln()).sqrt();
            let t = 2.0 * std::f64::consts::PI * u2;
            out[i] = (r * t.cos()) as f32;
            if i + 1 < out.len() {
                out[i + 1] = (r * t.sin()) as f32;
            }
            i += 2;
        }
    }
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-30);
    v.iter_mut().for_each(|x| *x /= n);
}

struct DataGen {
    dim: usize,
    sigma: f32,
    centres: Vec<f32>,
    ncentres: usize,
}

impl DataGen {
    fn new(dim: usize, ncentres: usize, sigma: f32, seed: u64) -> Self {
        let mut rng = SplitMix64(seed ^ 0xC3A5_C85C_97CB_3127);
        let mut centres = vec![0f32; dim * ncentres];
        for c in centres.chunks_mut(dim) {
            rng.fill_gauss(c);
            normalize(c);
        }
        DataGen {
            dim,
            sigma,
            centres,
            ncentres,
        }
    }
    /// `n` vectors of stream `stream`; vector i depends only on (seed, stream, i), so smaller N
    /// are prefixes of larger N. Returns (vectors, mean cos to own centre).
    fn gen(&self, seed: u64, stream: u64, n: usize) -> (Vec<f32>, f64) {
        let d = self.dim;
        let mut out = vec![0f32; n * d];
        let mut cos_sum = 0f64;
        for (i, v) in out.chunks_mut(d).enumerate() {
            let mut rng = SplitMix64(
                seed ^ stream.wrapping_mul(0xA24B_AED4_963E_E407)
                    ^ (i as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25),
            );
            rng.next_u64();
            let c = (rng.next_u64() % self.ncentres as u64) as usize;
            let centre = &self.centres[c * d..(c + 1) * d];
            rng.fill_gauss(v);
            for (x, &cx) in v.iter_mut().zip(centre) {
                *x = cx + self.sigma * *x;
            }
            normalize(v);
            cos_sum += v
                .iter()
                .zip(centre)
                .map(|(a, b)| (a * b) as f64)
                .sum::<f64>();
        }
        (out, cos_sum / n.max(1) as f64)
    }
}

// ---------------------------------- args ----------------------------------
#[derive(Clone, Debug)]
struct Args {
    sizes: Vec<usize>,
    variants: Vec<String>,
    nprobes: Vec<u32>,
    nq: usize,
    batch: usize,
    k: usize,
    threads: Option<usize>,
    label: String,
    json: Option<String>,
    seed: u64,
    dim: usize,
    centres: usize,
    sigma: f32,
    max_train: usize,
    min_time: f64,
    tmpdir: String,
    k_factor: u32,
    /// With feature faiss-gpu: also search each trained index's GPU mirror on this device.
    gpu: Option<u32>,
}

fn parse_list<T: std::str::FromStr>(s: &str) -> Vec<T> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(|x| {
            x.trim()
                .parse()
                .unwrap_or_else(|_| die(&format!("bad list item {x:?}")))
        })
        .collect()
}

fn die(msg: &str) -> ! {
    eprintln!("faiss-bench: {msg}");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        sizes: vec![1_000, 10_000, 100_000, 1_000_000],
        // NB: plain "PQ32" enables polysemous training (simulated annealing, ~200-400 s per
        // train at PQ32, independent of N); "PQ32np" disables it and is what we want.
        variants: vec!["IVF{nlist},PQ32np".into()],
        nprobes: vec![1, 4, 8, 16, 32, 64],
        nq: 2048,
        batch: 256,
        k: 10,
        threads: None,
        label: "default".into(),
        json: None,
        seed: 42,
        dim: 384,
        centres: 1000,
        sigma: 0.032, // cos(v, centre) ~ 1/sqrt(1 + d*sigma^2) ~ 0.85 for d = 384
        max_train: 100_000,
        min_time: 1.0,
        tmpdir: std::env::temp_dir().to_string_lossy().into_owned(),
        k_factor: 4,
        gpu: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let flag = argv[i].as_str();
        let mut val = || -> String {
            i += 1;
            argv.get(i)
                .cloned()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        match flag {
            "--quick" => a.sizes = vec![1_000, 10_000, 100_000],
            "--sizes" => a.sizes = parse_list(&val()),
            "--variants" => {
                a.variants = val()
                    .split(';')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            }
            "--k-factor" => a.k_factor = val().parse().unwrap_or_else(|_| die("bad --k-factor")),
            "--nprobes" => a.nprobes = parse_list(&val()),
            "--nq" => a.nq = val().parse().unwrap_or_else(|_| die("bad --nq")),
            "--batch" => a.batch = val().parse().unwrap_or_else(|_| die("bad --batch")),
            "--k" => a.k = val().parse().unwrap_or_else(|_| die("bad --k")),
            "--threads" => a.threads = Some(val().parse().unwrap_or_else(|_| die("bad --threads"))),
            "--label" => a.label = val(),
            "--json" => a.json = Some(val()),
            "--seed" => a.seed = val().parse().unwrap_or_else(|_| die("bad --seed")),
            "--dim" => a.dim = val().parse().unwrap_or_else(|_| die("bad --dim")),
            "--centres" => a.centres = val().parse().unwrap_or_else(|_| die("bad --centres")),
            "--sigma" => a.sigma = val().parse().unwrap_or_else(|_| die("bad --sigma")),
            "--max-train" => a.max_train = val().parse().unwrap_or_else(|_| die("bad --max-train")),
            "--min-time" => a.min_time = val().parse().unwrap_or_else(|_| die("bad --min-time")),
            "--tmpdir" => a.tmpdir = val(),
            "--gpu" if cfg!(feature = "faiss-gpu") => {
                a.gpu = Some(val().parse().unwrap_or_else(|_| die("bad --gpu")))
            }
            "--gpu" => die("--gpu needs a build with --features faiss-gpu"),
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("index.rs")
                        .lines()
                        .take_while(|l| l.starts_with("//!"))
                        .map(|l| l.trim_start_matches("//!"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0)
            }
            "--bench" => {} // passed by `cargo bench` when used as a harness=false bench
            other => die(&format!("unknown argument {other:?}")),
        }
        i += 1;
    }
    a
}

/// If --threads N is given and the environment does not match yet, re-exec ourselves with
/// OMP_NUM_THREADS / OPENBLAS_NUM_THREADS set (OpenBLAS only reads them at load time).
fn maybe_reexec(a: &Args) {
    if let Some(t) = a.threads {
        let t = t.to_string();
        let ok = |k: &str| std::env::var(k).ok().as_deref() == Some(t.as_str());
        if !(ok("OMP_NUM_THREADS") && ok("OPENBLAS_NUM_THREADS"))
            && std::env::var_os("FAISS_BENCH_CHILD").is_none()
        {
            let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("current_exe: {e}")));
            let status = std::process::Command::new(exe)
                .args(std::env::args_os().skip(1))
                .env("OMP_NUM_THREADS", &t)
                .env("OPENBLAS_NUM_THREADS", &t)
                .env("MKL_NUM_THREADS", &t)
                .env("FAISS_BENCH_CHILD", "1")
                .status()
                .unwrap_or_else(|e| die(&format!("re-exec failed: {e}")));
            std::process::exit(status.code().unwrap_or(1));
        }
        // SAFETY: sets this thread's OpenMP thread count; no pointers.
        unsafe { omp_set_num_threads(a.threads.unwrap() as c_int) };
    }
}

// ---------------------------------- bench ----------------------------------
fn nlist_for(n: usize) -> usize {
    let target = 4.0 * (n as f64).sqrt();
    let p = target.log2().round().max(4.0) as u32; // nearest power of two, min 16
    1usize << p
}

/// Search all queries in batches; returns (labels as i64 (-1 = none), distances).
fn search_all(
    index: &mut IndexImpl,
    q: &[f32],
    dim: usize,
    batch: usize,
    k: usize,
) -> (Vec<i64>, Vec<f32>) {
    let nq = q.len() / dim;
    let mut labels = Vec::with_capacity(nq * k);
    let mut dists = Vec::with_capacity(nq * k);
    for chunk in q.chunks(batch * dim) {
        let r = index
            .search(chunk, k)
            .unwrap_or_else(|e| die(&format!("search: {e}")));
        labels.extend(
            r.labels
                .iter()
                .map(|l: &Idx| l.get().map(|v| v as i64).unwrap_or(-1)),
        );
        dists.extend_from_slice(&r.distances);
    }
    let _ = nq;
    (labels, dists)
}

/// Repeat full passes over the queries until `min_time` has elapsed (max 50 passes);
/// return (best-pass queries/s, number of passes, labels, distances of the last pass).
fn timed_search(
    index: &mut IndexImpl,
    q: &[f32],
    dim: usize,
    batch: usize,
    k: usize,
    min_time: f64,
) -> (f64, usize, Vec<i64>, Vec<f32>) {
    let nq = q.len() / dim;
    let start = Instant::now();
    let mut best = f64::INFINITY;
    let mut passes = 0;
    let mut last = (Vec::new(), Vec::new());
    while passes == 0 || (start.elapsed().as_secs_f64() < min_time && passes < 50) {
        let t = Instant::now();
        last = search_all(index, q, dim, batch, k);
        best = best.min(t.elapsed().as_secs_f64());
        passes += 1;
    }
    (nq as f64 / best, passes, last.0, last.1)
}

fn file_bytes_per_vec(index: &IndexImpl, dir: &str, name: &str, n: usize) -> f64 {
    let path = format!("{dir}/faiss-bench-{}-{name}.index", std::process::id());
    write_index(index, &path).unwrap_or_else(|e| die(&format!("write_index: {e}")));
    let sz = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let _ = std::fs::remove_file(&path);
    sz as f64 / n as f64
}

/// A trained index searched on the CPU and through the daemon's own GPU mirror, same queries.
#[cfg(feature = "faiss-gpu")]
struct GpuRow {
    n: usize,
    desc: String,
    nprobe: u32,
    cpu_qps: f64,
    gpu_qps: f64,
    /// Share of the CPU's top-k ids the GPU also returned (ties can swap the last places).
    agreement: f64,
}

#[cfg(feature = "faiss-gpu")]
#[allow(clippy::too_many_arguments)]
fn gpu_row(
    a: &Args,
    cpu_index: &IndexImpl,
    device: u32,
    n: usize,
    desc: &str,
    nprobe: u32,
    cpu_qps: f64,
    queries: &[f32],
    cpu_labels: &[i64],
) -> Option<GpuRow> {
    let plan = anomalyd::detect::gpu::gpu_plan(desc, 0, nprobe as usize)
        .unwrap_or_else(|l| die(&format!("{desc} cannot go to a GPU: {}", l.why)));
    let mut mirror = match anomalyd::detect::gpu::GpuMirror::of(cpu_index, device, 1 << 30, plan) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("[n={n}] {desc}: no GPU mirror: {e}");
            return None;
        }
    };
    let (gpu_qps, _, gl, _) =
        timed_search(mirror.index(), queries, a.dim, a.batch, a.k, a.min_time);
    let mut same = 0usize;
    for qi in 0..a.nq {
        let c = &cpu_labels[qi * a.k..(qi + 1) * a.k];
        let g = &gl[qi * a.k..(qi + 1) * a.k];
        same += c.iter().filter(|x| **x >= 0 && g.contains(x)).count();
    }
    let agreement = same as f64 / (a.nq * a.k) as f64;
    eprintln!("[n={n}] {desc} nprobe={nprobe} on GPU {device}: {gpu_qps:.0} q/s ({:.1}x the CPU), agreement {agreement:.4}", gpu_qps / cpu_qps);
    Some(GpuRow {
        n,
        desc: desc.to_owned(),
        nprobe,
        cpu_qps,
        gpu_qps,
        agreement,
    })
}

#[cfg(feature = "faiss-gpu")]
fn print_gpu_rows(rows: &[GpuRow]) {
    if rows.is_empty() {
        return;
    }
    println!();
    println!("| N | index | nprobe | CPU q/s | GPU q/s | GPU / CPU | top-k agreement |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.4} |",
            r.n,
            r.desc,
            r.nprobe,
            r.cpu_qps,
            r.gpu_qps,
            r.gpu_qps / r.cpu_qps,
            r.agreement
        );
    }
}

struct Row {
    n: usize,
    desc: String,
    nprobe: u32, // 0 = flat
    qps: f64,
    speedup: f64,
    r10: f64,
    r1_at1: f64,
    r1_at10: f64,
    dist_err: f64,
    train_s: f64,
    add_s: f64,
    bytes_per_vec: f64,
    passes: usize,
}

fn main() {
    let a = parse_args();
    maybe_reexec(&a);
    // SAFETY: reads this thread's OpenMP setting; no pointers.
    let omp = unsafe { omp_get_max_threads() };
    let env = |k: &str| std::env::var(k).unwrap_or_else(|_| "unset".into());
    let header = format!(
        "label={} omp_max_threads={} OMP_NUM_THREADS={} OPENBLAS_NUM_THREADS={} dim={} centres={} sigma={} nq={} batch={} k={} seed={}",
        a.label, omp, env("OMP_NUM_THREADS"), env("OPENBLAS_NUM_THREADS"), a.dim, a.centres, a.sigma, a.nq, a.batch, a.k, a.seed
    );
    println!("# faiss-bench: {header}");
    let d = a.dim;
    let gen = DataGen::new(d, a.centres, a.sigma, a.seed);
    let maxn = *a.sizes.iter().max().unwrap_or(&0);
    let t = Instant::now();
    let (base, cos_b) = gen.gen(a.seed, 1, maxn);
    let (queries, cos_q) = gen.gen(a.seed, 2, a.nq);
    println!("# generated {maxn} base + {} queries in {:.1}s; mean cos(vec, centre): base {cos_b:.3}, queries {cos_q:.3}", a.nq, t.elapsed().as_secs_f64());

    let mut rows: Vec<Row> = Vec::new();
    #[cfg(feature = "faiss-gpu")]
    let mut gpu_rows: Vec<GpuRow> = Vec::new();
    let ps = ParameterSpace::new().unwrap();
    for &n in &a.sizes {
        let xb = &base[..n * d];
        let ids: Vec<Idx> = (0..n as u64).map(Idx::new).collect();
        // ---- exact
        let mut flat = index_factory(d as u32, "IDMap2,Flat", MetricType::L2).unwrap();
        let t = Instant::now();
        flat.add_with_ids(xb, &ids).unwrap();
        let flat_add = t.elapsed().as_secs_f64();
        let (flat_qps, passes, gt_l, gt_d) =
            timed_search(&mut flat, &queries, d, a.batch, a.k, a.min_time);
        let flat_bpv = file_bytes_per_vec(&flat, &a.tmpdir, "flat", n);
        drop(flat);
        eprintln!("[n={n}] flat: {flat_qps:.0} q/s ({passes} passes)");
        rows.push(Row {
            n,
            desc: "IDMap2,Flat".into(),
            nprobe: 0,
            qps: flat_qps,
            speedup: 1.0,
            r10: 1.0,
            r1_at1: 1.0,
            r1_at10: 1.0,
            dist_err: 0.0,
            train_s: 0.0,
            add_s: flat_add,
            bytes_per_vec: flat_bpv,
            passes,
        });

        let nlist = nlist_for(n);
        for v in &a.variants {
            // v: factory string template, "{nlist}" is substituted, "IDMap2," is prepended.
            let desc = format!("IDMap2,{}", v.replace("{nlist}", &nlist.to_string()));
            let mut idx = match index_factory(d as u32, &desc, MetricType::L2) {
                Ok(i) => i,
                Err(e) => {
                    eprintln!("skip {desc}: {e}");
                    continue;
                }
            };
            let ntrain = n.min(256 * nlist).min(a.max_train);
            let t = Instant::now();
            idx.train(&xb[..ntrain * d]).unwrap();
            let train_s = t.elapsed().as_secs_f64();
            let t = Instant::now();
            idx.add_with_ids(xb, &ids).unwrap();
            let add_s = t.elapsed().as_secs_f64();
            let bpv = file_bytes_per_vec(&idx, &a.tmpdir, "ivf", n);
            eprintln!("[n={n}] {desc}: trained on {ntrain} in {train_s:.1}s, add {add_s:.1}s, {bpv:.1} B/vec");
            for &np in &a.nprobes {
                if np as usize > nlist {
                    continue;
                }
                ps.set_index_parameter(&idx, "nprobe", np).unwrap();
                if desc.contains(",RFlat") || desc.contains(",Refine") {
                    ps.set_index_parameter(&idx, "k_factor_rf", a.k_factor)
                        .unwrap();
                } else {
                    let got = read_nprobe(&idx);
                    assert_eq!(
                        got,
                        Some(np as usize),
                        "nprobe read-back mismatch for {desc}"
                    );
                }
                let (qps, passes, l, dd) =
                    timed_search(&mut idx, &queries, d, a.batch, a.k, a.min_time);
                let (mut hit10, mut hit1, mut hit1_10, mut derr) = (0usize, 0usize, 0usize, 0f64);
                for qi in 0..a.nq {
                    let g = &gt_l[qi * a.k..(qi + 1) * a.k];
                    let r = &l[qi * a.k..(qi + 1) * a.k];
                    hit10 += g.iter().filter(|x| **x >= 0 && r.contains(x)).count();
                    hit1 += (r[0] == g[0]) as usize;
                    hit1_10 += r.contains(&g[0]) as usize;
                    let gd = gt_d[qi * a.k] as f64;
                    derr += ((dd[qi * a.k] as f64 - gd).abs()) / gd.max(1e-12);
                }
                let nqf = a.nq as f64;
                rows.push(Row {
                    n,
                    desc: desc.clone(),
                    nprobe: np,
                    qps,
                    speedup: qps / flat_qps,
                    r10: hit10 as f64 / (nqf * a.k as f64),
                    r1_at1: hit1 as f64 / nqf,
                    r1_at10: hit1_10 as f64 / nqf,
                    dist_err: derr / nqf,
                    train_s,
                    add_s,
                    bytes_per_vec: bpv,
                    passes,
                });
                let r = rows.last().unwrap();
                eprintln!(
                    "[n={n}] {desc} nprobe={np}: {qps:.0} q/s x{:.1} R@10={:.3}",
                    r.speedup, r.r10
                );
                #[cfg(feature = "faiss-gpu")]
                if let Some(device) = a.gpu {
                    gpu_rows.extend(gpu_row(&a, &idx, device, n, &desc, np, qps, &queries, &l));
                }
            }
        }
    }

    // ---- markdown table
    #[cfg(feature = "faiss-gpu")]
    print_gpu_rows(&gpu_rows);
    println!();
    println!("| N | index | nprobe | q/s | x flat | R10@10 | R1@1 | R1@10 | nn-dist rel.err | train s | add s | B/vec |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {:.1} |",
            r.n, r.desc, if r.nprobe == 0 { "-".to_string() } else { r.nprobe.to_string() }, r.qps, r.speedup,
            r.r10, r.r1_at1, r.r1_at10, r.dist_err, r.train_s, r.add_s, r.bytes_per_vec
        );
    }

    if let Some(path) = &a.json {
        let mut s = String::new();
        let esc = |x: &str| x.replace('\\', "\\\\").replace('"', "\\\"");
        write!(s, "{{\"label\":\"{}\",\"omp_max_threads\":{},\"omp_num_threads_env\":\"{}\",\"openblas_num_threads_env\":\"{}\",\"dim\":{},\"centres\":{},\"sigma\":{},\"nq\":{},\"batch\":{},\"k\":{},\"seed\":{},\"mean_cos_base\":{:.4},\"rows\":[",
            esc(&a.label), omp, esc(&env("OMP_NUM_THREADS")), esc(&env("OPENBLAS_NUM_THREADS")), a.dim, a.centres, a.sigma, a.nq, a.batch, a.k, a.seed, cos_b).unwrap();
        for (i, r) in rows.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            write!(s, "{{\"n\":{},\"index\":\"{}\",\"nprobe\":{},\"qps\":{:.3},\"speedup_vs_flat\":{:.4},\"recall10_at10\":{:.5},\"recall1_at1\":{:.5},\"recall1_at10\":{:.5},\"nn_dist_rel_err\":{:.6},\"train_s\":{:.4},\"add_s\":{:.4},\"bytes_per_vec\":{:.3},\"passes\":{}}}",
                r.n, esc(&r.desc), r.nprobe, r.qps, r.speedup, r.r10, r.r1_at1, r.r1_at10, r.dist_err, r.train_s, r.add_s, r.bytes_per_vec, r.passes).unwrap();
        }
        s.push_str("]}\n");
        std::fs::write(path, s).unwrap_or_else(|e| die(&format!("write {path}: {e}")));
        println!("# wrote {path}");
    }
}
