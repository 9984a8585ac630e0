// The epilogue of a linear layer: y = x + bias per column, then optionally the exact (erf) GELU,
// written as fp32 and/or fp16. cuBLAS computes x·Wᵀ; the bias is added here so that the product
// and the epilogue read the activations once each.
// Launch contract: kernels/README.md, "bias_act".

__device__ __forceinline__ float gelu_erf(float v) {
    return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
}

// `apply_gelu` is 0 or 1. `bias`, `out` and `out_half` may each be null; `out` may equal `x`.
extern "C" __global__ void bias_act(const float* x, const float* bias, long long rows, int cols,
                                    int apply_gelu, float* out, half_bits* out_half) {
    const long long total = rows * cols;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        float v = x[i];
        if (bias) v += bias[i % cols];
        if (apply_gelu) v = gelu_erf(v);
        if (out) out[i] = v;
        if (out_half) out_half[i] = float_to_half(v);
    }
}
