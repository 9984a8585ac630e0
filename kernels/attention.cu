// Fused multi-head self-attention for short sequences, on a packed batch: the tokens of every text
// are rows back to back (no padding), and text i owns rows offsets[i]..offsets[i+1]. Each block
// attends one head of one text over that text's rows only, which is exactly what the padding mask
// does in a padded batch; padded positions simply do not exist here.
// Launch contract: kernels/README.md, "attention_short".

// qkv: [tokens, 3·hidden] fp16, each row [q | k | v] with the biases already added.
// context: [tokens, hidden] fp16, heads side by side.
extern "C" __global__ void attention_short(const half_bits* qkv, const unsigned int* offsets,
                                           int hidden, int head_dim, int max_len, float scale,
                                           half_bits* context) {
    extern __shared__ float shared[];
    const int text = blockIdx.x;
    const int head = blockIdx.y;
    const int start = offsets[text];
    const int len = offsets[text + 1] - start;
    // Keys and values as fp16 rows padded by one word, so that the lanes of a warp, each reading
    // its own key row, hit different banks.
    const int pitch = head_dim + 2;
    half_bits* keys = (half_bits*)shared;
    half_bits* values = keys + (size_t)max_len * pitch;
    float* per_warp = (float*)(values + (size_t)max_len * pitch);
    const int width = 3 * hidden;
    const half_bits* rows = qkv + (size_t)start * width;
    const int column = head * head_dim;

    for (int i = threadIdx.x; i < len * head_dim; i += blockDim.x) {
        const int r = i / head_dim;
        const int d = i - r * head_dim;
        keys[r * pitch + d] = rows[(size_t)r * width + hidden + column + d];
        values[r * pitch + d] = rows[(size_t)r * width + 2 * hidden + column + d];
    }
    __syncthreads();

    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int warps = blockDim.x >> 5;
    float* scores = per_warp + (size_t)warp * (max_len + head_dim);
    float* query = scores + max_len;
    for (int i = warp; i < len; i += warps) {
        for (int d = lane; d < head_dim; d += 32)
            query[d] = half_to_float(rows[(size_t)i * width + column + d]) * scale;
        __syncwarp();
        float highest = negative_infinity();
        for (int j = lane; j < len; j += 32) {
            const half_bits* key = keys + j * pitch;
            float s = 0.0f;
            for (int d = 0; d < head_dim; ++d) s += query[d] * half_to_float(key[d]);
            scores[j] = s;
            highest = fmaxf(highest, s);
        }
        highest = warp_max(highest);
        float sum = 0.0f;
        for (int j = lane; j < len; j += 32) {
            const float e = expf(scores[j] - highest);
            scores[j] = e;
            sum += e;
        }
        sum = warp_sum(sum);
        __syncwarp();
        const float inverse = 1.0f / sum;
        for (int d = lane; d < head_dim; d += 32) {
            float acc = 0.0f;
            for (int j = 0; j < len; ++j) acc += scores[j] * half_to_float(values[j * pitch + d]);
            context[(size_t)(start + i) * hidden + column + d] = float_to_half(acc * inverse);
        }
        __syncwarp();
    }
}
