#!/usr/bin/env bash
# benchmarks/latency.py on one CUDA GPU: the latency share beside the MAC share at batch 128 and 1, 224x224 for
# torchvision's models, each data set's shape for the registered archs (about 8 minutes on an H200: resnet18 at
# one MAC share took 31 s, start-up, cuDNN's autotuning, Torch-Pruning's bisection and the format plans included).
#   bash benchmarks/gpu_latency.sh [OUT_DIR]     # the tables land in OUT_DIR/latency_gpu.txt (default /tmp/gpu_latency)
# One process per model and MAC share, each with its own time limit, so one that stalls cannot take the others'
# time and every finished one's table is kept. Torch-Pruning's columns need torch-pruning importable.
set -u
out=${1:-/tmp/gpu_latency}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
python=${PYTHON:-python3}
log="$out/latency_gpu.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>&1 | tee -a "$log"
"$python" -c 'import torch, torchvision, torch_pruning as tp; print("torch", torch.__version__, "torchvision", torchvision.__version__, "torch-pruning", tp.__version__)' 2>&1 | tee -a "$log"
common=(--device cuda --threads 8 --batches 128,1 --multiples 1,8 --peer-multiples 1 --seconds 0.5 --rounds 5)
for model in resnet18 resnet50 mobilenet_v2 efficientnet_b0 regnet_x_400mf; do
  for share in 0.3 0.5; do
    timeout "${LIMIT:-90}" "$python" benchmarks/latency.py "${common[@]}" --size 224 --models "$model" --shares "$share" \
      2>&1 | tee -a "$log"
  done
done
timeout 90 "$python" benchmarks/latency.py "${common[@]}" \
  --models registered:resnet18,registered:wrn16_4,registered:cnn,registered:lenet5,registered:mlp 2>&1 | tee -a "$log"
