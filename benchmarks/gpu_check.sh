#!/usr/bin/env bash
# The one prepared run for a lent GPU machine (the `device` tool): what the CUDA path gives, side by side with
# the original code on the same GPU. Writes its figures under $OUT (or ./gpu-check). Every step fails soft: a
# missing piece is reported and the next step still runs.
set -u
out=${OUT:-gpu-check}
mkdir -p "$out"
nvidia-smi -L 2>&1 | tee "$out/gpu.txt"
python - <<'PY' 2>&1 | tee -a "$out/gpu.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
PY
python -c "import fomm_core" 2>/dev/null || python -m pip install -q -e . 2>&1 | tail -2
python -c "import deep_animator" 2>/dev/null || python -m pip install -q --no-deps deep-animator 2>&1 | tail -2
# exact fp32 (TF32 off), fp16 autocast (what auto/fast pick on CUDA), torch.compile'd exact, and the original
for size in 256 512; do
  config=vox-256; [ "$size" = 512 ] && config=vox-512
  timeout 240 python -m fomm_core.bench --device cuda --config "$config" --size "$size" --frames 16 --runs 5 \
    --paths reference,exact,fast,exact-compiled --json > "$out/bench_cuda_$size.json" 2> "$out/bench_cuda_$size.err"
  python -c "import json,sys; from fomm_core.bench import format_text; print(format_text(json.load(open(sys.argv[1]))))" \
    "$out/bench_cuda_$size.json" 2>&1 | tee "$out/bench_cuda_$size.txt"
done
