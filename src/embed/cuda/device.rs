//! One OS thread per GPU owns its CUDA context, streams and weights and takes batches from a
//! channel (text-embeddings-inference's shape); [`GpuPool`] is the [`Embedder`] in front of them.
//! It spreads each batch over the GPUs still in rotation, least loaded first, takes a GPU that
//! fails out of rotation and re-embeds its share elsewhere, and after the last GPU the CPU, so no
//! batch is lost to a GPU error (an Xid, an out-of-memory).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::CudaContext;

use super::backend::{CudaBackend, Kernels};
use super::kernels::KernelCache;
use super::CudaError;
use crate::config::NumaBinding;
use crate::embed::model::ModelFiles;
use crate::embed::{EmbedError, Embedder, Embeddings, MiniLm};
use crate::numa::{self, Binding, Scope};

/// How long one share of a batch may take before its GPU is presumed hung and taken out.
const SHARE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct GpuOptions {
    pub model_dir: PathBuf,
    /// Batches in flight per GPU, one CUDA stream each.
    pub streams: usize,
    /// Where compiled kernels are kept; `None` compiles at every start.
    pub kernel_cache: Option<PathBuf>,
    pub numa: NumaBinding,
}

/// What a GPU's thread found and set up, for the logs and `Stats`.
#[derive(Debug, Clone)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub arch: String,
    pub pci_bus_id: String,
    pub binding: Binding,
    pub model_id: String,
    pub dim: usize,
    pub weight_bytes: usize,
    /// Device memory in use once the model is loaded (this process and any other), and the total.
    pub used_bytes: usize,
    pub total_bytes: usize,
}

impl GpuInfo {
    pub fn label(&self) -> String {
        format!("cuda:{} {} ({})", self.ordinal, self.name, self.arch)
    }
}

struct Share {
    index: usize,
    texts: Vec<String>,
    reply: mpsc::Sender<(usize, Result<Embeddings, EmbedError>)>,
}

/// A GPU's thread, seen from the pool.
struct Gpu {
    info: GpuInfo,
    shares: Option<mpsc::Sender<Share>>,
    thread: Option<JoinHandle<()>>,
    /// Texts sent and not yet answered: the load the pool balances.
    queued: Arc<AtomicUsize>,
    /// Why it was taken out of rotation.
    failed: Option<String>,
}

impl Gpu {
    /// Starts the thread for GPU `ordinal` and waits until its model is loaded (or failed).
    fn start(ordinal: usize, options: &GpuOptions) -> Result<Gpu, EmbedError> {
        let options = options.clone();
        Gpu::spawn(ordinal, move || open(ordinal, &options))
    }

    /// Starts thread `gpu<ordinal>`, which makes its embedder with `open` (on the thread itself:
    /// a CUDA context and its streams belong to the thread that made them) and then embeds the
    /// shares sent to it until the pool drops its sender.
    fn spawn<E, F>(ordinal: usize, open: F) -> Result<Gpu, EmbedError>
    where
        E: Embedder,
        F: FnOnce() -> Result<(E, GpuInfo), EmbedError> + Send + 'static,
    {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (shares_tx, shares_rx) = mpsc::channel::<Share>();
        let queued = Arc::new(AtomicUsize::new(0));
        let thread_queued = queued.clone();
        let thread = std::thread::Builder::new()
            .name(format!("gpu{ordinal}"))
            .spawn(move || {
                let (mut model, info) = match open() {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(info));
                for share in shares_rx {
                    let texts: Vec<&str> = share.texts.iter().map(String::as_str).collect();
                    let result = model.embed(&texts);
                    thread_queued.fetch_sub(texts.len(), Ordering::Relaxed);
                    let _ = share.reply.send((share.index, result));
                }
            })
            .map_err(|e| EmbedError::DeviceUnavailable(format!("GPU {ordinal}: thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(info)) => Ok(Gpu {
                info,
                shares: Some(shares_tx),
                thread: Some(thread),
                queued,
                failed: None,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(CudaError::ThreadStopped { ordinal }.into())
            }
        }
    }
}

impl Drop for Gpu {
    fn drop(&mut self) {
        self.shares.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs on the GPU's own thread: context, NUMA binding, kernels, weights.
fn open(
    ordinal: usize,
    options: &GpuOptions,
) -> Result<(MiniLm<CudaBackend>, GpuInfo), EmbedError> {
    let context = CudaContext::new(ordinal).map_err(CudaError::from)?;
    // SAFETY: each backend drives one stream of its own; the weights are written through the
    // first stream and the context synchronised before any stream reads them (below), so
    // cudarc's cross-stream event tracking has nothing to order.
    unsafe { context.disable_event_tracking() };
    let attribute = |a| context.attribute(a).map_err(CudaError::from);
    let pci_bus_id = format!(
        "{:04x}:{:02x}:{:02x}.0",
        attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
        attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
        attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
    );
    let binding = numa::bind_near(Some(&pci_bus_id), options.numa, Scope::Thread);
    let name = context.name().map_err(CudaError::from)?;
    let kernels = Arc::new(Kernels::load(
        &context,
        &KernelCache::new(options.kernel_cache.clone()),
    )?);
    let files = ModelFiles::open(&options.model_dir)?;
    let vocab = files.config.vocab_size;
    let mut workers = Vec::with_capacity(options.streams.max(1));
    for _ in 0..options.streams.max(1) {
        let stream = context.new_stream().map_err(CudaError::from)?;
        workers.push(CudaBackend::new(stream, kernels.clone(), vocab)?);
    }
    let arch = kernels.arch.clone();
    let model = MiniLm::from_files(&files, workers, format!("cuda:{ordinal} {name} ({arch})"))?;
    context.synchronize().map_err(CudaError::from)?;
    let (free, total) = context.mem_get_info().map_err(CudaError::from)?;
    let info = GpuInfo {
        ordinal,
        name,
        arch,
        pci_bus_id,
        binding,
        model_id: model.model_id(),
        dim: model.dim(),
        weight_bytes: model.workers().first().map_or(0, |w| w.weight_bytes),
        used_bytes: total.saturating_sub(free),
        total_bytes: total,
    };
    Ok((model, info))
}

/// The visible GPUs' count, 0 when the driver reports none or cannot be asked.
pub fn device_count() -> usize {
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

/// The GPU embedder: one thread per GPU, and the CPU behind them.
pub struct GpuPool {
    gpus: Vec<Gpu>,
    /// Where batches go once every GPU has failed.
    cpu: Option<Box<dyn Embedder>>,
    model_id: String,
    dim: usize,
    /// How long one share may take before its GPU is presumed hung.
    share_timeout: Duration,
}

impl GpuPool {
    /// Starts a thread on each of `ordinals`. `strict`: any GPU that fails to start fails the
    /// whole; otherwise it is logged and skipped, and at least one must start.
    pub fn start(
        ordinals: &[usize],
        options: &GpuOptions,
        strict: bool,
    ) -> Result<GpuPool, EmbedError> {
        let mut gpus = Vec::new();
        let mut refusals = Vec::new();
        for &ordinal in ordinals {
            match Gpu::start(ordinal, options) {
                Ok(gpu) => gpus.push(gpu),
                Err(e) if strict => {
                    return Err(EmbedError::DeviceUnavailable(format!("GPU {ordinal}: {e}")))
                }
                Err(e) => {
                    tracing::warn!(gpu = ordinal, error = %e, "GPU not used");
                    refusals.push(format!("GPU {ordinal}: {e}"));
                }
            }
        }
        if gpus.is_empty() {
            return Err(EmbedError::DeviceUnavailable(if refusals.is_empty() {
                "no GPU is visible".into()
            } else {
                refusals.join("; ")
            }));
        }
        Ok(GpuPool::of(gpus))
    }

    /// A pool of started GPU threads (at least one).
    fn of(gpus: Vec<Gpu>) -> GpuPool {
        GpuPool {
            model_id: gpus[0].info.model_id.clone(),
            dim: gpus[0].info.dim,
            gpus,
            cpu: None,
            share_timeout: SHARE_TIMEOUT,
        }
    }

    /// The embedder batches go to once every GPU has failed.
    pub fn set_cpu(&mut self, cpu: Box<dyn Embedder>) {
        self.cpu = Some(cpu);
    }

    pub fn is_healthy(&self, ordinal: usize) -> bool {
        self.gpus
            .iter()
            .any(|g| g.info.ordinal == ordinal && g.failed.is_none())
    }

    pub fn infos(&self) -> Vec<GpuInfo> {
        self.gpus.iter().map(|g| g.info.clone()).collect()
    }

    /// GPUs still in rotation.
    pub fn healthy(&self) -> usize {
        self.gpus.iter().filter(|g| g.failed.is_none()).count()
    }

    /// Embeds `texts` on GPU `gpu` alone, for the warm-up comparison.
    pub fn embed_on(&mut self, gpu: usize, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.send(gpu, 0, texts, &reply_tx)?;
        self.receive(gpu, &reply_rx)
    }

    /// Takes GPU `gpu` out of rotation, logging why.
    pub fn retire(&mut self, gpu: usize, reason: String) {
        let g = &mut self.gpus[gpu];
        tracing::error!(gpu = g.info.ordinal, reason = %reason, "GPU taken out of rotation");
        g.failed = Some(reason);
        g.shares.take();
        // Detached, not joined: a thread stuck in a hung GPU would hold shutdown for ever.
        g.thread.take();
    }

    fn send(
        &self,
        gpu: usize,
        index: usize,
        texts: &[&str],
        reply: &mpsc::Sender<(usize, Result<Embeddings, EmbedError>)>,
    ) -> Result<(), EmbedError> {
        let g = &self.gpus[gpu];
        let sender = g.shares.as_ref().ok_or(CudaError::ThreadStopped {
            ordinal: g.info.ordinal,
        })?;
        g.queued.fetch_add(texts.len(), Ordering::Relaxed);
        sender
            .send(Share {
                index,
                texts: texts.iter().map(|t| (*t).to_owned()).collect(),
                reply: reply.clone(),
            })
            .map_err(|_| {
                CudaError::ThreadStopped {
                    ordinal: g.info.ordinal,
                }
                .into()
            })
    }

    fn receive(
        &self,
        gpu: usize,
        replies: &mpsc::Receiver<(usize, Result<Embeddings, EmbedError>)>,
    ) -> Result<Embeddings, EmbedError> {
        match replies.recv_timeout(self.share_timeout) {
            Ok((_, result)) => result,
            Err(_) => Err(CudaError::ThreadStopped {
                ordinal: self.gpus[gpu].info.ordinal,
            }
            .into()),
        }
    }

    /// Cuts `texts` into one contiguous share per GPU in rotation, the least loaded first; a
    /// batch too small to be worth splitting goes whole to the least loaded.
    fn plan(&self, texts: usize) -> Vec<(usize, std::ops::Range<usize>)> {
        let mut healthy: Vec<usize> = (0..self.gpus.len())
            .filter(|&i| self.gpus[i].failed.is_none())
            .collect();
        healthy.sort_by_key(|&i| self.gpus[i].queued.load(Ordering::Relaxed));
        let parts = healthy.len().min(texts.div_ceil(MIN_SHARE)).max(1);
        let per = texts.div_ceil(parts).max(1);
        healthy
            .into_iter()
            .take(parts)
            .enumerate()
            .map(|(i, gpu)| (gpu, (i * per).min(texts)..((i + 1) * per).min(texts)))
            .filter(|(_, range)| !range.is_empty())
            .collect()
    }
}

impl GpuPool {
    fn failures(&self) -> Vec<String> {
        self.gpus
            .iter()
            .filter_map(|g| {
                g.failed
                    .as_ref()
                    .map(|f| format!("GPU {}: {f}", g.info.ordinal))
            })
            .collect()
    }
}

/// Texts below which splitting a batch between GPUs costs more than it saves.
const MIN_SHARE: usize = 64;

impl Embedder for GpuPool {
    fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
        if texts.is_empty() {
            return Ok(Embeddings {
                dim: self.dim,
                data: Vec::new(),
            });
        }
        // Each share's first row's index in the batch, so the shares can be put back in order.
        let mut results: Vec<(usize, Embeddings)> = Vec::new();
        // A work list of row ranges: it starts as the whole batch and grows as shares fail over.
        #[allow(clippy::single_range_in_vec_init)]
        let mut pending: Vec<std::ops::Range<usize>> = vec![0..texts.len()];
        while let Some(range) = pending.pop() {
            if self.healthy() == 0 {
                let failures = self.failures().join("; ");
                let cpu = self.cpu.as_mut().ok_or_else(|| {
                    EmbedError::DeviceUnavailable(format!("every GPU has failed: {failures}"))
                })?;
                let part = cpu.embed(&texts[range.clone()])?;
                results.push((range.start, part));
                continue;
            }
            let plan: Vec<(usize, std::ops::Range<usize>)> = self
                .plan(range.len())
                .into_iter()
                .map(|(gpu, r)| (gpu, range.start + r.start..range.start + r.end))
                .collect();
            let (reply_tx, reply_rx) = mpsc::channel();
            let mut sent = Vec::new();
            for (index, (gpu, r)) in plan.iter().enumerate() {
                match self.send(*gpu, index, &texts[r.clone()], &reply_tx) {
                    Ok(()) => sent.push(index),
                    Err(e) => {
                        self.retire(*gpu, e.to_string());
                        pending.push(r.clone());
                    }
                }
            }
            drop(reply_tx);
            let mut answered = vec![false; plan.len()];
            for _ in 0..sent.len() {
                match reply_rx.recv_timeout(self.share_timeout) {
                    Ok((index, Ok(part))) => {
                        answered[index] = true;
                        results.push((plan[index].1.start, part));
                    }
                    // Bad input fails on any device: it is the caller's, not the GPU's.
                    Ok((_, Err(e @ EmbedError::Tokenizer(_)))) => return Err(e),
                    Ok((index, Err(e))) => {
                        answered[index] = true;
                        self.retire(plan[index].0, e.to_string());
                        pending.push(plan[index].1.clone());
                    }
                    Err(_) => break,
                }
            }
            for index in sent.into_iter().filter(|&i| !answered[i]) {
                let reason = format!("no answer within {:?}", self.share_timeout);
                self.retire(plan[index].0, reason);
                pending.push(plan[index].1.clone());
            }
        }
        results.sort_by_key(|(start, _)| *start);
        let mut data = Vec::with_capacity(texts.len() * self.dim);
        for (_, part) in results {
            data.extend(part.data);
        }
        Ok(Embeddings {
            dim: self.dim,
            data,
        })
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn model_id(&self) -> String {
        self.model_id.clone()
    }

    fn backend(&self) -> String {
        let live: Vec<String> = self
            .gpus
            .iter()
            .filter(|g| g.failed.is_none())
            .map(|g| g.info.label())
            .collect();
        match live.len() {
            0 => format!(
                "{} (every GPU failed: {})",
                self.cpu
                    .as_ref()
                    .map_or_else(|| "nothing".to_owned(), |c| c.backend()),
                self.failures().join("; ")
            ),
            1 => live[0].clone(),
            n => format!("{n} GPUs: {}", live.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The pool's dispatch (spreading, order, failing over, the CPU behind the last GPU) with
    //! real embedders on its threads in place of CUDA models, and faults injected where a GPU
    //! would raise them (an Xid, an out-of-memory, a hang). The CUDA model itself runs on a GPU
    //! only: scripts/gpu-check.

    use std::sync::Mutex;

    use super::*;
    use crate::embed::HashingEmbedder;
    use crate::numa::Binding;

    const DIM: usize = 384;

    #[derive(Clone, Copy)]
    enum Fault {
        None,
        /// Every batch fails as a GPU fault would.
        Always,
        /// Every batch fails as bad input would (on any device).
        BadInput,
        /// No answer for this long.
        Hang(Duration),
    }

    /// The hashing embedder on a "GPU" thread, with a fault, keeping the texts it embedded.
    struct Worker {
        inner: HashingEmbedder,
        fault: Fault,
        seen: Arc<Mutex<Vec<String>>>,
    }

    impl Embedder for Worker {
        fn embed(&mut self, texts: &[&str]) -> Result<Embeddings, EmbedError> {
            match self.fault {
                Fault::None => {}
                Fault::Always => {
                    return Err(
                        CudaError::Unsupported("injected: CUDA out of memory".into()).into(),
                    )
                }
                Fault::BadInput => return Err(EmbedError::Tokenizer("injected: bad text".into())),
                Fault::Hang(d) => std::thread::sleep(d),
            }
            self.seen
                .lock()
                .unwrap()
                .extend(texts.iter().map(|t| t.to_string()));
            self.inner.embed(texts)
        }
        fn dim(&self) -> usize {
            DIM
        }
        fn model_id(&self) -> String {
            "hashing".into()
        }
        fn backend(&self) -> String {
            "test worker".into()
        }
    }

    fn info(ordinal: usize) -> GpuInfo {
        GpuInfo {
            ordinal,
            name: format!("worker {ordinal}"),
            arch: "sm_90".into(),
            pci_bus_id: format!("0000:{ordinal:02x}:00.0"),
            binding: Binding::Unbound("a test worker".into()),
            model_id: "hashing".into(),
            dim: DIM,
            weight_bytes: 0,
            used_bytes: 0,
            total_bytes: 0,
        }
    }

    /// A pool of one worker per fault; the texts each has embedded.
    fn pool(faults: &[Fault]) -> (GpuPool, Vec<Arc<Mutex<Vec<String>>>>) {
        let mut gpus = Vec::new();
        let mut seen = Vec::new();
        for (ordinal, &fault) in faults.iter().enumerate() {
            let texts = Arc::new(Mutex::new(Vec::new()));
            seen.push(texts.clone());
            let gpu = Gpu::spawn(ordinal, move || {
                let worker = Worker {
                    inner: HashingEmbedder::new(DIM),
                    fault,
                    seen: texts,
                };
                Ok((worker, info(ordinal)))
            })
            .unwrap();
            gpus.push(gpu);
        }
        (GpuPool::of(gpus), seen)
    }

    fn texts(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("systemd unit u{i}.service ActiveState=active"))
            .collect()
    }

    fn embed(pool: &mut GpuPool, texts: &[String]) -> Result<Embeddings, EmbedError> {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        pool.embed(&refs)
    }

    fn reference(texts: &[String]) -> Embeddings {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        HashingEmbedder::new(DIM).embed(&refs).unwrap()
    }

    #[test]
    fn a_batch_is_spread_over_the_gpus_and_comes_back_in_order() {
        let (mut pool, seen) = pool(&[Fault::None, Fault::None]);
        let batch = texts(300);
        assert_eq!(embed(&mut pool, &batch).unwrap(), reference(&batch));
        let (a, b) = (seen[0].lock().unwrap().len(), seen[1].lock().unwrap().len());
        assert_eq!(a + b, 300);
        assert!(a >= 100 && b >= 100, "shares {a} and {b}");
        assert_eq!(
            pool.backend(),
            "2 GPUs: cuda:0 worker 0 (sm_90), cuda:1 worker 1 (sm_90)"
        );
    }

    #[test]
    fn a_small_batch_goes_whole_to_the_least_loaded_gpu() {
        let (pool, _) = pool(&[Fault::None, Fault::None]);
        pool.gpus[0].queued.store(500, Ordering::Relaxed);
        assert_eq!(pool.plan(10), vec![(1, 0..10)]);
        assert_eq!(pool.plan(200), vec![(1, 0..100), (0, 100..200)]);
    }

    #[test]
    fn a_failing_gpu_is_taken_out_and_its_share_embedded_elsewhere() {
        let (mut pool, seen) = pool(&[Fault::Always, Fault::None]);
        let batch = texts(300);
        assert_eq!(embed(&mut pool, &batch).unwrap(), reference(&batch));
        assert!(!pool.is_healthy(0) && pool.is_healthy(1));
        assert_eq!(pool.healthy(), 1);
        assert_eq!(seen[1].lock().unwrap().len(), 300, "every text, once");
        assert_eq!(pool.backend(), "cuda:1 worker 1 (sm_90)");
        // The next batch goes to the GPU left alone.
        let next = texts(100);
        assert_eq!(embed(&mut pool, &next).unwrap(), reference(&next));
        assert_eq!(seen[1].lock().unwrap().len(), 400);
    }

    #[test]
    fn after_the_last_gpu_the_cpu_embeds_the_batch() {
        let (mut pool, _) = pool(&[Fault::Always, Fault::Always]);
        let batch = texts(200);
        let error = embed(&mut pool, &batch).unwrap_err().to_string();
        assert!(
            error.contains("every GPU has failed") && error.contains("out of memory"),
            "{error}"
        );
        pool.set_cpu(Box::new(HashingEmbedder::new(DIM)));
        assert_eq!(embed(&mut pool, &batch).unwrap(), reference(&batch));
        let backend = pool.backend();
        assert!(backend.contains("every GPU failed"), "{backend}");
    }

    #[test]
    fn a_hung_gpu_is_retired_after_the_share_timeout() {
        let (mut pool, seen) = pool(&[Fault::Hang(Duration::from_secs(3)), Fault::None]);
        pool.share_timeout = Duration::from_millis(300);
        let batch = texts(300);
        let started = std::time::Instant::now();
        assert_eq!(embed(&mut pool, &batch).unwrap(), reference(&batch));
        assert!(started.elapsed() < Duration::from_secs(3), "not waited out");
        assert!(!pool.is_healthy(0));
        assert_eq!(seen[1].lock().unwrap().len(), 300);
        let failures = pool.failures().join("; ");
        assert!(failures.contains("no answer within 300ms"), "{failures}");
    }

    #[test]
    fn bad_input_fails_the_batch_without_retiring_a_gpu() {
        let (mut pool, _) = pool(&[Fault::BadInput, Fault::BadInput]);
        let error = embed(&mut pool, &texts(10)).unwrap_err();
        assert!(matches!(error, EmbedError::Tokenizer(_)), "{error}");
        assert_eq!(pool.healthy(), 2);
    }
}
