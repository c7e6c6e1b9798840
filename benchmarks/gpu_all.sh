#!/usr/bin/env bash
# Every GPU measurement of benchmarks/README.md in one go, on one CUDA GPU (about 8 minutes at most).
#   bash benchmarks/gpu_all.sh [OUT_DIR]      # logs and gpu_epoch.json land in OUT_DIR (default /tmp/gpu_benchmarks)
# Each step has its own time limit, so one that stalls cannot take the others' time.
# The latency tables (latency.py on the GPU) are benchmarks/gpu_latency.sh: another ~8 minutes.
set -u
out=${1:-/tmp/gpu_benchmarks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee "$out/gpu.txt"
"$python" -c 'import torch, cooper; print("torch", torch.__version__, "cuda", torch.version.cuda, "cooper ok")' | tee -a "$out/gpu.txt"

# 1. gate overhead per training step (issue 8 goal 1 on the GPU), WRN-28-10 at the paper's batch 128
timeout 80 "$python" benchmarks/step_overhead.py --archs wrn28_10 --big-batch 128 --device cuda --threads 8 \
  --amp --channels-last --repeats 5 2>&1 | tee "$out/step_overhead.txt"

# 2. density control on the GPU path: digits CNN, bf16 autocast + channels-last, the digits preset
timeout 60 "$python" -m ctrlsparse train --dataset digits --arch cnn --method constrained --target 0.5 --device cuda \
  --amp --channels-last --out /tmp/gpu_digits 2>&1 | tail -4 | tee "$out/digits_cuda.txt"

# 3. WRN-28-10 epochs on synthetic CIFAR-10 pickles: variants beside the FLOP lower bound
timeout 300 "$python" benchmarks/gpu_epoch.py --out /tmp/gpu_epoch 2>&1 | tee "$out/gpu_epoch.txt"
cp /tmp/gpu_epoch/gpu_epoch.json "$out/" 2>/dev/null

# 4. what purging buys at inference on the GPU
timeout 45 "$python" benchmarks/purge_speed.py --device cuda --archs wrn16_4,lenet5 --densities 0.3,0.5 \
  --repeats 10 2>&1 | tee "$out/purge_speed.txt"
