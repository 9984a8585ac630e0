// Masked mean pooling + L2 normalisation: one unit vector per text, the mean of its own rows
// (offsets[i]..offsets[i+1] of the packed batch) divided by max(‖mean‖, 1e-12), as
// sentence-transformers' Pooling and Normalize modules compute it.
// Launch contract: kernels/README.md, "mean_pool_normalize".

extern "C" __global__ void mean_pool_normalize(const float* x, const unsigned int* offsets,
                                               int texts, int cols, float* out) {
    extern __shared__ float shared[];
    float* mean = shared;
    float* scratch = shared + cols;
    const int text = blockIdx.x;
    if (text >= texts) return;
    const int start = offsets[text];
    const int len = offsets[text + 1] - start;
    const float count = len > 0 ? (float)len : 1.0f;
    float squares = 0.0f;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float sum = 0.0f;
        for (int r = 0; r < len; ++r) sum += x[(size_t)(start + r) * cols + c];
        mean[c] = sum / count;
        squares += mean[c] * mean[c];
    }
    const float norm = fmaxf(sqrtf(block_sum(squares, scratch)), 1e-12f);
    for (int c = threadIdx.x; c < cols; c += blockDim.x) out[(size_t)text * cols + c] = mean[c] / norm;
}
