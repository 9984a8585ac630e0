// Residual + LayerNorm after a linear layer: row r of the output is
// LayerNorm(x[r] + bias + residual[r]), in fp32, with an fp16 copy for the next product.
// Launch contract: kernels/README.md, "residual_layernorm".

// `bias` and `out_half` may be null; `out` may equal `x` (each block reads its whole row into
// shared memory before writing it).
extern "C" __global__ void residual_layernorm(const float* x, const float* bias,
                                              const float* residual, int rows, int cols,
                                              const float* gamma, const float* beta, float eps,
                                              float* out, half_bits* out_half) {
    extern __shared__ float shared[];
    float* row = shared;
    float* scratch = shared + cols;
    const int r = blockIdx.x;
    if (r >= rows) return;
    const size_t at = (size_t)r * cols;
    for (int c = threadIdx.x; c < cols; c += blockDim.x)
        row[c] = x[at + c] + (bias ? bias[c] : 0.0f) + residual[at + c];
    layer_norm_row(row, cols, gamma, beta, eps, scratch, out + at,
                   out_half ? out_half + at : nullptr);
}
