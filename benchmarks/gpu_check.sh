#!/usr/bin/env bash
# Run a benchmark script on a GPU machine that has PyTorch and torchvision but neither mmbook
# nor network access, from a copy of this checkout.
#
# Before copying:  make gpu-data          (the CIFAR-10 copy packed into .gpu/, git-ignored)
#                  pip download --no-deps airbench==0.1.8 -d .gpu   (for airbench_side_by_side.py only)
# On the GPU machine, in the checkout:
#   bash benchmarks/gpu_check.sh [ARGS...]                           # benchmarks/gpu_check.py ARGS
#   bash benchmarks/gpu_check.sh airbench_side_by_side.py [ARGS...]  # another script in benchmarks/
#
# mmbook (and airbench, if its source is in .gpu/) is used through PYTHONPATH. Results go to the
# folder $OUT (default ./results): the script's log, and its JSON or JSONL.
set -euo pipefail
out="${OUT:-results}"
script=gpu_check.py
if [[ "${1:-}" == *.py ]]; then script="$1"; shift; fi
mkdir -p /tmp/mmbook-data "$out"
tar xzf .gpu/cifar10.tar.gz -C /tmp/mmbook-data
export MMBOOK_DATA=/tmp/mmbook-data MMBOOK_CACHE=/tmp/mmbook-cache MMBOOK_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".gpu/airbench-*.tar.gz" > /dev/null; then
  mkdir -p /tmp/airbench
  tar xzf .gpu/airbench-*.tar.gz -C /tmp/airbench --strip-components=1
  export PYTHONPATH="/tmp/airbench:$PYTHONPATH"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
if [[ "$script" == gpu_check.py ]]; then set -- --out "$out" "$@"; else set -- --json "$out/${script%.py}.json" "$@"; fi
python3 "benchmarks/$script" "$@" 2>&1 | tee "$out/${script%.py}.log"
