#!/usr/bin/env bash
# The GPU figures of benchmarks/gpu_check.py on the `device` tool's machine.
#
# Here:   make gpu-data            (packs ../shared/data/cifar10 into .gpu/, git-ignored)
# Then:   run(command="bash benchmarks/gpu_check.sh", carry=[".gpu"], timeout_s=590)
#
# That machine has PyTorch, torchvision, tqdm and matplotlib but not mmbook, so mmbook
# is used from the checkout through PYTHONPATH. Results land in $OUT (the tool's
# folder that comes back) or ./results, as gpu_check.jsonl and gpu_check.log.
set -euo pipefail
out="${OUT:-results}"
mkdir -p /tmp/mmbook-data "$out"
tar xzf .gpu/cifar10.tar.gz -C /tmp/mmbook-data
export MMBOOK_DATA=/tmp/mmbook-data MMBOOK_CACHE=/tmp/mmbook-cache MMBOOK_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 benchmarks/gpu_check.py --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
