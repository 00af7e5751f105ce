#!/usr/bin/env bash
# Reproduce the GPU table on a CUDA machine: PyTorch FP32 (the 1x reference) and FP16 with CUDA
# graphs, and TensorRT engines (FP32, FP16, INT8) where TensorRT is installed. Each case reports
# end-to-end latency (host patches in, host descriptors out, copies included) and the GPU
# compute time from CUDA events.
# Writes benchmarks/results/<machine>.{json,md,png}, <machine> like gpu-nvidia-h100-80gb-hbm3.
# Extra arguments go to `hardnet-export bench` (e.g. --duration-s 10).
set -euo pipefail
cd "$(dirname "$0")/.."
machine=$(python -c "from hardnet_export.benchmark.machine import gpu_slug; print(gpu_slug())")
out="benchmarks/results/${machine}"
python -m hardnet_export bench --device cuda --batch-sizes 1,32,256,512,1024,4096 \
    --warmup-s 0.2 --duration-s 3 \
    --json "${out}.json" --markdown "${out}.md" --plot "${out}.png" "$@"
