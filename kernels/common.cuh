// Helpers every kernel file uses. The daemon prepends this file to each kernel source before NVRTC
// compiles it: NVRTC here has no include path, and it ships no cuda_fp16.h, so fp16 values are
// carried as their 16 bits and converted with the PTX instructions themselves.
//
// Every kernel is launched with blockDim.x a multiple of 32 (whole warps): the reductions below
// rely on it.

typedef unsigned short half_bits;

__device__ __forceinline__ float half_to_float(half_bits h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ half_bits float_to_half(float f) {
    half_bits h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}

__device__ __forceinline__ float negative_infinity() { return __int_as_float(0xff800000); }

__device__ __forceinline__ float warp_sum(float v) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int offset = 16; offset > 0; offset >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// The sum of `v` over the block, returned to every thread. `scratch` is 32 floats of shared
// memory; the leading barrier lets a caller use it for two sums in a row.
__device__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < warps ? scratch[lane] : 0.0f);
}

// LayerNorm of one row held in shared memory (`row`, `cols` floats), as PyTorch computes it: the
// biased variance, two passes, fp32 throughout. Writes the fp32 result to `out` and its fp16 copy
// to `out_half`; either may be null. Each thread touches only the columns it owns
// (threadIdx.x + k·blockDim.x), so the row needs no barrier between being written and read here.
__device__ void layer_norm_row(const float* row, int cols, const float* gamma, const float* beta,
                               float eps, float* scratch, float* out, half_bits* out_half) {
    float sum = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += row[c];
    const float mean = block_sum(sum, scratch) / cols;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float d = row[c] - mean;
        squares += d * d;
    }
    const float variance = block_sum(squares, scratch) / cols;
    const float inverse = rsqrtf(variance + eps);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float y = (row[c] - mean) * inverse * gamma[c] + beta[c];
        if (out) out[c] = y;
        if (out_half) out_half[c] = float_to_half(y);
    }
}
