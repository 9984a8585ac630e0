//! The CUDA [`Backend`]: matrix products through cuBLAS in fp16 with fp32 accumulation (tensor
//! cores), everything row-wise in the kernels of `kernels/`. Activations stay fp32 where a
//! LayerNorm or the pooling reads them and carry an fp16 copy where a product reads them next.
//!
//! One backend drives one CUDA stream. A GPU runs several (`gpu.streams`), each fed its share of
//! a batch by [`crate::embed::MiniLm`] from its own thread, so one share's transfers overlap
//! another's compute; the weights are uploaded once, through the first, and shared.

use std::ffi::c_void;
use std::ops::Range;
use std::sync::Arc;

use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;

use super::kernels::{KernelCache, KERNELS};
use super::staging::{Direction, Staging};
use super::CudaError;
use crate::embed::bert::{Backend, EmbeddingTables, LayerNorm, Linear, Packed, ParamKind};
use crate::embed::EmbedError;

/// Threads per block of the row-wise kernels: whole warps, as kernels/README.md requires.
const ROW_BLOCK: u32 = 128;
/// Shared memory a block may take without opting in to more.
const DEFAULT_SHARED_LIMIT: usize = 48 * 1024;

/// The kernels' entry points, loaded once per device and shared by its streams.
pub struct Kernels {
    embed_layernorm: CudaFunction,
    bias_act: CudaFunction,
    residual_layernorm: CudaFunction,
    attention_short: CudaFunction,
    mean_pool_normalize: CudaFunction,
    pub arch: String,
}

impl Kernels {
    /// Compiles (or takes from `cache`) every kernel for `context`'s compute capability and loads it.
    pub fn load(context: &Arc<CudaContext>, cache: &KernelCache) -> Result<Kernels, CudaError> {
        let (major, minor) = context.compute_capability()?;
        let arch = format!("sm_{major}{minor}");
        let mut functions = std::collections::HashMap::new();
        for kernel in &KERNELS {
            let cubin = cache.cubin(kernel, &arch)?;
            let module = context.load_module(Ptx::from_binary(cubin))?;
            for name in kernel.entry_points {
                functions.insert(*name, module.load_function(name)?);
            }
        }
        let mut take = |name: &str| {
            functions
                .remove(name)
                .ok_or_else(|| CudaError::Unsupported(format!("kernel {name} was not loaded")))
        };
        Ok(Kernels {
            embed_layernorm: take("embed_layernorm")?,
            bias_act: take("bias_act")?,
            residual_layernorm: take("residual_layernorm")?,
            attention_short: take("attention_short")?,
            mean_pool_normalize: take("mean_pool_normalize")?,
            arch,
        })
    }
}

/// A weight in device memory, in the precision its use needs.
pub enum DeviceParam {
    Float(CudaSlice<f32>),
    /// fp16 bits: linear weights, read only by the tensor cores.
    Half(CudaSlice<u16>),
}

/// Row-major `[rows, cols]` on the device: the fp32 values and/or their fp16 copy.
pub struct DeviceMatrix {
    rows: usize,
    cols: usize,
    full: Option<CudaSlice<f32>>,
    half: Option<CudaSlice<u16>>,
}

impl DeviceMatrix {
    /// The fp32 values, which `what` needs.
    fn full(&self, what: &str) -> Result<&CudaSlice<f32>, EmbedError> {
        self.full
            .as_ref()
            .ok_or_else(|| err(CudaError::Unsupported(format!("{what} has no fp32 values"))))
    }

    /// The fp16 copy, which `what` needs.
    fn half(&self, what: &str) -> Result<&CudaSlice<u16>, EmbedError> {
        self.half
            .as_ref()
            .ok_or_else(|| err(CudaError::Unsupported(format!("{what} has no fp16 copy"))))
    }
}

pub struct CudaBackend {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    kernels: Arc<Kernels>,
    vocab: usize,
    /// Row offsets of the current batch's texts, uploaded once per batch, not once per layer.
    offsets: Option<(Vec<u32>, CudaSlice<u32>)>,
    /// Page-locked host memory for the per-batch transfers, one buffer per transfer in a pass
    /// (ids and positions, offsets, pooled vectors), so none waits on another's copy.
    staged_tokens: Staging<u32>,
    staged_offsets: Staging<u32>,
    staged_pooled: Staging<f32>,
    /// Bytes of weights uploaded through this backend.
    pub weight_bytes: usize,
}

fn err(e: impl Into<CudaError>) -> EmbedError {
    EmbedError::Cuda(e.into())
}

fn bits_f16(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect()
}

impl CudaBackend {
    pub fn new(
        stream: Arc<CudaStream>,
        kernels: Arc<Kernels>,
        vocab: usize,
    ) -> Result<CudaBackend, CudaError> {
        let blas = CudaBlas::new(stream.clone())?;
        Ok(CudaBackend {
            stream,
            blas,
            kernels,
            vocab,
            offsets: None,
            staged_tokens: Staging::new(Direction::Upload),
            staged_offsets: Staging::new(Direction::Upload),
            staged_pooled: Staging::new(Direction::Download),
            weight_bytes: 0,
        })
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn ptr<T>(&self, slice: &CudaSlice<T>) -> u64 {
        // Event tracking is off on our contexts (one stream per backend; the shared weights are
        // written once and synchronised before use), so the guard records nothing.
        slice.device_ptr(&self.stream).0
    }

    fn alloc<T: cudarc::driver::DeviceRepr>(&self, len: usize) -> Result<CudaSlice<T>, EmbedError> {
        // SAFETY: every buffer allocated here is written in full by the kernel or product it is
        // allocated for before anything reads it.
        unsafe { self.stream.alloc::<T>(len.max(1)) }.map_err(err)
    }

    fn offsets(&mut self, texts: &[Range<usize>]) -> Result<u64, EmbedError> {
        let mut wanted: Vec<u32> = Vec::with_capacity(texts.len() + 1);
        wanted.push(texts.first().map_or(0, |t| t.start as u32));
        wanted.extend(texts.iter().map(|t| t.end as u32));
        if !matches!(&self.offsets, Some((cached, _)) if *cached == wanted) {
            let device = self
                .staged_offsets
                .upload(&self.stream, &[&wanted])
                .map_err(err)?;
            self.offsets = Some((wanted, device));
        }
        let (_, device) = self.offsets.as_ref().expect("set above");
        Ok(self.ptr(device))
    }

    /// `y = x·Wᵀ` in fp32 from x's fp16 copy and W's fp16 weight, before any bias.
    fn product(
        &mut self,
        x: &DeviceMatrix,
        layer: &Linear<DeviceParam>,
    ) -> Result<CudaSlice<f32>, EmbedError> {
        let DeviceParam::Half(weight) = &layer.weight else {
            return Err(err(CudaError::Unsupported(
                "a linear weight is not fp16".into(),
            )));
        };
        let x_half = x.half("a product's input")?;
        if x.cols != layer.inputs {
            return Err(err(CudaError::Unsupported(format!(
                "a product of {} columns with a {}-input layer",
                x.cols, layer.inputs
            ))));
        }
        let y = self.alloc::<f32>(x.rows * layer.outputs)?;
        if x.rows == 0 {
            return Ok(y);
        }
        let (alpha, beta) = (1.0f32, 0.0f32);
        let (w, a, c) = (self.ptr(weight), self.ptr(x_half), self.ptr(&y));
        // Row-major Y[rows, out] = X[rows, in]·Wᵀ is, column-major, Yᵀ[out, rows] = W·Xᵀ with W
        // stored [out, in] row-major, i.e. an [in, out] column-major matrix used transposed.
        // SAFETY: `w` holds outputs×inputs fp16 values, `a` rows×inputs, `c` rows×outputs fp32
        // (allocated just above), matching the dimensions and leading dimensions passed; alpha and
        // beta are host floats, cuBLAS's default pointer mode; all three buffers live on the stream
        // the handle is bound to and outlive the call, which only enqueues work on that stream.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                layer.outputs as i32,
                x.rows as i32,
                layer.inputs as i32,
                (&alpha as *const f32).cast::<c_void>(),
                w as *const c_void,
                cudaDataType::CUDA_R_16F,
                layer.inputs as i32,
                a as *const c_void,
                cudaDataType::CUDA_R_16F,
                layer.inputs as i32,
                (&beta as *const f32).cast::<c_void>(),
                c as *mut c_void,
                cudaDataType::CUDA_R_32F,
                layer.outputs as i32,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(err)?;
        Ok(y)
    }

    fn vector<'a>(&self, param: &'a DeviceParam) -> Result<&'a CudaSlice<f32>, EmbedError> {
        match param {
            DeviceParam::Float(v) => Ok(v),
            DeviceParam::Half(_) => Err(err(CudaError::Unsupported(
                "a bias or norm parameter is fp16".into(),
            ))),
        }
    }

    #[allow(clippy::too_many_arguments)] // the kernel's own argument list, named
    /// `bias_act`: `x + bias`, GELU when asked, into `out` (fp32, may be `x`) and/or `out_half`.
    fn bias_act(
        &self,
        x: &CudaSlice<f32>,
        bias: Option<&CudaSlice<f32>>,
        rows: usize,
        cols: usize,
        gelu: bool,
        out: Option<u64>,
        out_half: Option<u64>,
    ) -> Result<(), EmbedError> {
        let total = rows * cols;
        if total == 0 {
            return Ok(());
        }
        let (x, bias) = (self.ptr(x), bias.map_or(0, |b| self.ptr(b)));
        let (rows, cols, gelu) = (rows as i64, cols as i32, gelu as i32);
        let (out, out_half) = (out.unwrap_or(0), out_half.unwrap_or(0));
        let blocks = total.div_ceil(256).min(65_535) as u32;
        let mut launch = self.stream.launch_builder(&self.kernels.bias_act);
        launch
            .arg(&x)
            .arg(&bias)
            .arg(&rows)
            .arg(&cols)
            .arg(&gelu)
            .arg(&out)
            .arg(&out_half);
        // SAFETY: bias_act's contract (kernels/README.md): x and out hold rows×cols fp32, out_half
        // rows×cols fp16, bias cols fp32; a null pointer means "none". Grid-stride loop, so any
        // grid covers every element.
        unsafe {
            launch.launch(LaunchConfig {
                grid_dim: (blocks, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            })
        }
        .map_err(err)?;
        Ok(())
    }

    /// `x·Wᵀ + bias`, through GELU when `gelu`. The GELU's output is read only by the next
    /// product, so it is kept as fp16 alone; a plain linear keeps its fp32 values too.
    fn product_epilogue(
        &mut self,
        x: &DeviceMatrix,
        layer: &Linear<DeviceParam>,
        gelu: bool,
    ) -> Result<DeviceMatrix, EmbedError> {
        let y = self.product(x, layer)?;
        let half = self.alloc::<u16>(x.rows * layer.outputs)?;
        let bias = self.vector(&layer.bias)?;
        let full_out = (!gelu).then(|| self.ptr(&y));
        self.bias_act(
            &y,
            Some(bias),
            x.rows,
            layer.outputs,
            gelu,
            full_out,
            Some(self.ptr(&half)),
        )?;
        Ok(DeviceMatrix {
            rows: x.rows,
            cols: layer.outputs,
            full: (!gelu).then_some(y),
            half: Some(half),
        })
    }

    /// `residual_layernorm` over `x` in place: `LayerNorm(x + bias + residual)`, with an fp16 copy.
    fn residual_norm(
        &self,
        x: &mut DeviceMatrix,
        bias: Option<&CudaSlice<f32>>,
        residual: &DeviceMatrix,
        norm: &LayerNorm<DeviceParam>,
    ) -> Result<(), EmbedError> {
        if x.half.is_none() {
            x.half = Some(self.alloc::<u16>(x.rows * x.cols)?);
        }
        let full = x.full("add_norm's input")?;
        let residual_full = residual.full("the residual")?;
        if x.rows == 0 {
            return Ok(());
        }
        let x_ptr = self.ptr(full);
        let bias = bias.map_or(0, |b| self.ptr(b));
        let residual_ptr = self.ptr(residual_full);
        let (gamma, beta) = (
            self.ptr(self.vector(&norm.weight)?),
            self.ptr(self.vector(&norm.bias)?),
        );
        let half = self.ptr(x.half.as_ref().expect("allocated above"));
        let (rows, cols, eps) = (x.rows as i32, x.cols as i32, norm.eps);
        let shared = ((x.cols + 32) * 4) as u32;
        let mut launch = self.stream.launch_builder(&self.kernels.residual_layernorm);
        launch
            .arg(&x_ptr)
            .arg(&bias)
            .arg(&residual_ptr)
            .arg(&rows)
            .arg(&cols)
            .arg(&gamma)
            .arg(&beta)
            .arg(&eps)
            .arg(&x_ptr)
            .arg(&half);
        // SAFETY: residual_layernorm's contract: x, residual and out hold rows×cols fp32 (out is
        // x: each block reads its row into shared memory before writing it), out_half rows×cols
        // fp16, gamma/beta/bias cols fp32; one block per row; (cols + 32) floats of shared memory.
        unsafe {
            launch.launch(LaunchConfig {
                grid_dim: (x.rows as u32, 1, 1),
                block_dim: (ROW_BLOCK, 1, 1),
                shared_mem_bytes: shared,
            })
        }
        .map_err(err)?;
        Ok(())
    }
}

impl Backend for CudaBackend {
    type Matrix = DeviceMatrix;
    type Param = DeviceParam;

    fn max_tokens_per_pass(&self) -> usize {
        // The widest activation is tokens × 1536 fp32: 384 MiB at this size, small on a GPU,
        // and large enough that a batch of 1024 short texts is one pass.
        65_536
    }

    fn param(
        &mut self,
        values: Vec<f32>,
        _shape: &[usize],
        kind: ParamKind,
    ) -> Result<DeviceParam, EmbedError> {
        let param = match kind {
            ParamKind::LinearWeight => {
                self.weight_bytes += values.len() * 2;
                DeviceParam::Half(self.stream.clone_htod(&bits_f16(&values)).map_err(err)?)
            }
            ParamKind::Table | ParamKind::Vector => {
                self.weight_bytes += values.len() * 4;
                DeviceParam::Float(self.stream.clone_htod(&values).map_err(err)?)
            }
        };
        Ok(param)
    }

    fn embed(
        &mut self,
        batch: &Packed,
        tables: &EmbeddingTables<DeviceParam>,
        hidden: usize,
    ) -> Result<DeviceMatrix, EmbedError> {
        // The context is current per thread: each stream's worker binds it before its first call.
        self.stream.context().bind_to_thread().map_err(err)?;
        if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(EmbedError::Tokenizer(format!(
                "token id {id} is outside the vocabulary"
            )));
        }
        self.offsets(&batch.texts)?;
        let tokens = batch.tokens();
        if batch.positions.len() != tokens {
            return Err(err(CudaError::Unsupported(format!(
                "a packed batch of {tokens} token ids has {} positions",
                batch.positions.len()
            ))));
        }
        let full = self.alloc::<f32>(tokens * hidden)?;
        let half = self.alloc::<u16>(tokens * hidden)?;
        if tokens > 0 {
            // One staging buffer for both: ids then positions, in one copy.
            let both = self
                .staged_tokens
                .upload(&self.stream, &[&batch.ids, &batch.positions])
                .map_err(err)?;
            let ids_ptr = self.ptr(&both);
            let positions_ptr = ids_ptr + (tokens * std::mem::size_of::<u32>()) as u64;
            let (words, position_table, token_type) = (
                self.ptr(self.vector(&tables.words)?),
                self.ptr(self.vector(&tables.positions)?),
                self.ptr(self.vector(&tables.token_types)?),
            );
            let (gamma, beta) = (
                self.ptr(self.vector(&tables.norm.weight)?),
                self.ptr(self.vector(&tables.norm.bias)?),
            );
            let (out, out_half) = (self.ptr(&full), self.ptr(&half));
            let (tokens_i, hidden_i, eps) = (tokens as i32, hidden as i32, tables.norm.eps);
            let mut launch = self.stream.launch_builder(&self.kernels.embed_layernorm);
            launch
                .arg(&ids_ptr)
                .arg(&positions_ptr)
                .arg(&tokens_i)
                .arg(&hidden_i)
                .arg(&words)
                .arg(&position_table)
                .arg(&token_type)
                .arg(&gamma)
                .arg(&beta)
                .arg(&eps)
                .arg(&out)
                .arg(&out_half);
            // SAFETY: embed_layernorm's contract: ids and position_ids hold `tokens` values, each
            // id < vocab (checked above) and each position < max_positions (the tokenizer
            // truncates to max_seq_len ≤ max_positions); the tables are [vocab|positions|1, hidden]
            // fp32; out/out_half tokens×hidden; one block per token, (hidden + 32) floats of
            // shared memory. `both` (ids, then positions at `tokens` elements in) is freed
            // stream-ordered, after the kernel.
            unsafe {
                launch.launch(LaunchConfig {
                    grid_dim: (tokens as u32, 1, 1),
                    block_dim: (ROW_BLOCK, 1, 1),
                    shared_mem_bytes: ((hidden + 32) * 4) as u32,
                })
            }
            .map_err(err)?;
        }
        Ok(DeviceMatrix {
            rows: tokens,
            cols: hidden,
            full: Some(full),
            half: Some(half),
        })
    }

    fn linear(
        &mut self,
        x: &DeviceMatrix,
        layer: &Linear<DeviceParam>,
    ) -> Result<DeviceMatrix, EmbedError> {
        self.product_epilogue(x, layer, false)
    }

    fn gelu(&mut self, x: &mut DeviceMatrix) -> Result<(), EmbedError> {
        if x.half.is_none() {
            x.half = Some(self.alloc::<u16>(x.rows * x.cols)?);
        }
        let full = x.full("gelu's input")?;
        let half = self.ptr(x.half.as_ref().expect("allocated above"));
        self.bias_act(
            full,
            None,
            x.rows,
            x.cols,
            true,
            Some(self.ptr(full)),
            Some(half),
        )
    }

    fn linear_gelu(
        &mut self,
        x: &DeviceMatrix,
        layer: &Linear<DeviceParam>,
    ) -> Result<DeviceMatrix, EmbedError> {
        self.product_epilogue(x, layer, true)
    }

    fn linear_add_norm(
        &mut self,
        x: &DeviceMatrix,
        layer: &Linear<DeviceParam>,
        residual: &DeviceMatrix,
        norm: &LayerNorm<DeviceParam>,
    ) -> Result<DeviceMatrix, EmbedError> {
        let y = self.product(x, layer)?;
        let mut out = DeviceMatrix {
            rows: x.rows,
            cols: layer.outputs,
            full: Some(y),
            half: None,
        };
        let bias = self.vector(&layer.bias)?;
        self.residual_norm(&mut out, Some(bias), residual, norm)?;
        Ok(out)
    }

    fn attention(
        &mut self,
        qkv: &DeviceMatrix,
        texts: &[Range<usize>],
        heads: usize,
    ) -> Result<DeviceMatrix, EmbedError> {
        let hidden = qkv.cols / 3;
        let head_dim = hidden / heads.max(1);
        if head_dim == 0 || head_dim * heads != hidden || !head_dim.is_multiple_of(2) {
            return Err(err(CudaError::Unsupported(format!(
                "attention over {hidden} columns in {heads} heads: the head width must be even"
            ))));
        }
        let qkv_half = qkv.half("qkv")?;
        let context = self.alloc::<u16>(qkv.rows * hidden)?;
        if texts.is_empty() || qkv.rows == 0 {
            return Ok(DeviceMatrix {
                rows: qkv.rows,
                cols: hidden,
                full: None,
                half: Some(context),
            });
        }
        let max_len = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let warps = (ROW_BLOCK / 32) as usize;
        let shared = 2 * max_len * (head_dim + 2) * 2 + warps * (max_len + head_dim) * 4;
        if shared > DEFAULT_SHARED_LIMIT {
            return Err(err(CudaError::Unsupported(format!(
                "a text of {max_len} tokens needs {shared} bytes of shared memory in the fused \
                 attention, over the {DEFAULT_SHARED_LIMIT} a block gets"
            ))));
        }
        let offsets = self.offsets(texts)?;
        let (qkv_ptr, out) = (self.ptr(qkv_half), self.ptr(&context));
        let (hidden_i, head_dim_i, max_len_i) = (hidden as i32, head_dim as i32, max_len as i32);
        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut launch = self.stream.launch_builder(&self.kernels.attention_short);
        launch
            .arg(&qkv_ptr)
            .arg(&offsets)
            .arg(&hidden_i)
            .arg(&head_dim_i)
            .arg(&max_len_i)
            .arg(&scale)
            .arg(&out);
        // SAFETY: attention_short's contract: qkv is [tokens, 3·hidden] fp16 with biases added,
        // offsets has texts+1 ascending row indices within it (the packed batch's ranges), each
        // text at most max_len rows; context is [tokens, hidden] fp16; grid (texts, heads), a
        // block of whole warps, and the shared memory computed above (checked ≤ 48 KiB).
        unsafe {
            launch.launch(LaunchConfig {
                grid_dim: (texts.len() as u32, heads as u32, 1),
                block_dim: (ROW_BLOCK, 1, 1),
                shared_mem_bytes: shared as u32,
            })
        }
        .map_err(err)?;
        Ok(DeviceMatrix {
            rows: qkv.rows,
            cols: hidden,
            full: None,
            half: Some(context),
        })
    }

    fn add_norm(
        &mut self,
        x: &mut DeviceMatrix,
        residual: &DeviceMatrix,
        norm: &LayerNorm<DeviceParam>,
    ) -> Result<(), EmbedError> {
        self.residual_norm(x, None, residual, norm)
    }

    fn pool(&mut self, x: &DeviceMatrix, texts: &[Range<usize>]) -> Result<Vec<f32>, EmbedError> {
        let full = x.full("pooling's input")?;
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let out = self.alloc::<f32>(texts.len() * x.cols)?;
        let offsets = self.offsets(texts)?;
        let (x_ptr, out_ptr) = (self.ptr(full), self.ptr(&out));
        let (texts_i, cols_i) = (texts.len() as i32, x.cols as i32);
        let mut launch = self
            .stream
            .launch_builder(&self.kernels.mean_pool_normalize);
        launch
            .arg(&x_ptr)
            .arg(&offsets)
            .arg(&texts_i)
            .arg(&cols_i)
            .arg(&out_ptr);
        // SAFETY: mean_pool_normalize's contract: x is [tokens, cols] fp32, offsets texts+1
        // ascending row indices within it, out [texts, cols] fp32; one block per text, (cols + 32)
        // floats of shared memory.
        unsafe {
            launch.launch(LaunchConfig {
                grid_dim: (texts.len() as u32, 1, 1),
                block_dim: (ROW_BLOCK, 1, 1),
                shared_mem_bytes: ((x.cols + 32) * 4) as u32,
            })
        }
        .map_err(err)?;
        self.staged_pooled.download(&self.stream, &out).map_err(err)
    }
}
