#!/usr/bin/env bash
# The GPU check of maskopt, in one short slot (about 6 minutes on one H200, 9½ at the limits): the CUDA tests,
# the whole suite with a per-test timeout, the distillation overhead benchmark on CUDA, the 2:4
# semi-structured speed benchmark, and `maskopt demo` on CUDA. Every log and result goes to one folder.
#
#   bash benchmarks/gpu_check.sh [OUT]        # OUT defaults to $OUT, else ./gpu-check
#
# It installs only the project itself (pip --no-deps -e .) plus wheels found in .whl/ (the
# packages a bare CUDA machine lacks: pyomo, highspy, mnist1d; fetch them with the command
# at the end of this comment). Tests that need cvxpy (the SDP strengthening, the LISTA
# references) or notebooks are left out: their wheels do not fit the slot's upload.
# Outputs (at most 8 files): summary.txt (one line per step with its exit code and seconds),
# env.txt, cuda-tests.log, suite.log (with the 25 slowest tests), bench.log (both benchmarks' logs),
# distill_overhead_cuda.json and nm_speed_cuda.json (copy them to benchmarks/results/ and run
# `python benchmarks/report.py` to record them), demo.log.
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
#     -d .whl pyomo==6.10.1 highspy==1.16.0 mnist1d==0.0.2.post1
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-${OUT:-gpu-check}}
mkdir -p "$DEST"
SUMMARY="$DEST/summary.txt"
: > "$SUMMARY"

LOGS=(cuda-tests.log suite.log bench.log demo.log)
for log in "${LOGS[@]}"; do : > "$DEST/$log"; done

step() {  # step NAME LIMIT_S LOG COMMAND...: run with a time limit (output appended to LOG), record rc and seconds
    local name=$1 limit=$2 log=$3; shift 3
    local t0=$SECONDS
    echo "== $name: $*" >> "$DEST/$log"
    timeout "$limit" "$@" >> "$DEST/$log" 2>&1
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - t0))$([ $rc -eq 124 ] && echo " (timed out after ${limit}s)")" \
        | tee -a "$SUMMARY"
}

export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . > "$DEST/env.txt" 2>&1 || { cat "$DEST/env.txt"; exit 1; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  nproc; } >> "$DEST/env.txt" 2>&1

LEAVE_OUT=(-k "not cvxpy and not sdp and not alista_weight" --ignore tests/test_notebooks.py -p no:cacheprovider)
# 1. the tests that exercise CUDA (every method on cuda, relaxations, autocast, models)
step cuda-tests 90 cuda-tests.log python3 -m pytest -q -rs -k "cuda or autocast or device" \
    --ignore tests/test_notebooks.py -p no:cacheprovider
# 2. the whole suite with the GPU present: one thread per worker, a per-test timeout names a hang
OMP_NUM_THREADS=1 step suite 170 suite.log python3 -m pytest -q -n 12 --timeout 120 --durations 25 \
    "${LEAVE_OUT[@]}"
# 3. mask step over dense step, KL distillation, batch 256 of 4096 CIFAR-shaped inputs
MASKOPT_BENCH_RESULTS="$DEST" step bench 170 bench.log python3 benchmarks/bench_distill_overhead.py \
    --device cuda --models resnet20 conv6 vgg16 --steps 200 --dense-steps 50 --repeats 2 --methods sigmoid ste \
    --variants default "full checks" compile --compile-mode reduce-overhead --compile-models resnet20
# 4. 2:4 semi-structured nn.Linear (LLaMA-7B and ViT-L MLP shapes) and a 4096-11008-4096 MLP against
#    the same masked weights dense, fp16 and bf16 (the limit covers the imports and CUDA start-up)
MASKOPT_BENCH_RESULTS="$DEST" step nm-speed 60 bench.log python3 benchmarks/bench_nm.py --parts speed --device cuda
# 5. the main job on the GPU
step demo 60 demo.log maskopt demo --device cuda --out /tmp/maskopt-demo --quiet
cat "$SUMMARY"
