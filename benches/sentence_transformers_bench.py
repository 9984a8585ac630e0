"""sentence-transformers on the CPU over the same BGL_2k message texts as benches/embed.rs:
events/s at batch 1, 64 and 256 with torch limited to the same number of threads, and peak RSS.
Run by benches/embed-compare; prints one JSON object."""
import json
import resource
import sys
import time

model_dir, log_path, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

torch.set_num_threads(threads)
texts = []
with open(log_path, encoding="utf-8", errors="replace") as f:
    for line in f:
        parts = line.rstrip("\n").split(" ", 9)
        texts.append(parts[9].strip() if len(parts) > 9 else "")

model = SentenceTransformer(model_dir, device="cpu")
model.encode(texts[:64], batch_size=64, normalize_embeddings=True)  # warm-up
result = {"threads": torch.get_num_threads(), "torch": torch.__version__}
for batch in (1, 64, 256):
    start = time.perf_counter()
    model.encode(texts, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
    result[f"batch_{batch}"] = len(texts) / (time.perf_counter() - start)
    print(f"sentence-transformers batch {batch:>4}: {result[f'batch_{batch}']:8.1f} events/s", file=sys.stderr)
result["peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(result))
