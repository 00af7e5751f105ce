#!/usr/bin/env bash
# Reproduce the CPU table: every CPU variant of the shipped model (PyTorch eager FP32; ONNX FP32,
# FP16, INT8 for TensorRT and INT8 for the CPU on ONNX Runtime), trtexec timing rules, all cores.
# Writes benchmarks/results/<machine>.{json,md,png}, <machine> like cpu-2core-intel-xeon-processor.
# Extra arguments go to `hardnet-export bench` (e.g. --threads 1, --duration-s 10).
set -euo pipefail
cd "$(dirname "$0")/.."
machine=$(python -c "from hardnet_export.benchmark.machine import cpu_slug; print(cpu_slug())")
out="benchmarks/results/${machine}"
python -m hardnet_export bench --device cpu --batch-sizes 1,32,256,512,1024 \
    --warmup-s 0.2 --duration-s 3 \
    --json "${out}.json" --markdown "${out}.md" --plot "${out}.png" "$@"
