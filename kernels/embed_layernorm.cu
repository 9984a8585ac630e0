// Embedding gather + LayerNorm: row t of the output is
// LayerNorm(words[ids[t]] + positions[position_ids[t]] + token_type[0]).
// Launch contract: kernels/README.md, "embed_layernorm".

extern "C" __global__ void embed_layernorm(const unsigned int* ids, const unsigned int* position_ids,
                                           int tokens, int hidden, const float* words,
                                           const float* positions, const float* token_type,
                                           const float* gamma, const float* beta, float eps,
                                           float* out, half_bits* out_half) {
    extern __shared__ float shared[];
    float* row = shared;
    float* scratch = shared + hidden;
    const int t = blockIdx.x;
    if (t >= tokens) return;
    const float* word = words + (size_t)ids[t] * hidden;
    const float* position = positions + (size_t)position_ids[t] * hidden;
    for (int c = threadIdx.x; c < hidden; c += blockDim.x)
        row[c] = word[c] + position[c] + token_type[c];
    layer_norm_row(row, hidden, gamma, beta, eps, scratch, out + (size_t)t * hidden,
                   out_half ? out_half + (size_t)t * hidden : nullptr);
}
