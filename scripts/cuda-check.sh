#!/usr/bin/env bash
# Check the CUDA paths on a GPU machine, in one go:
#   (a) every CUDA test                      pytest -m cuda (the graph tests are left to (b))
#   (b) no host sync, CUDA graph replay      tests/framework/test_cuda.py (+ the CPU host-read test)
#   (c) the benchmarks at the GPU sizes      python -m benchmarks --device cuda -> results/benchmarks-cuda.json
#   (d) the experiment on the GPU            python -m experiment --device cuda --runs 2
# Each step runs under `timeout`, prints a header, and a failing step does not stop the others;
# the summary at the end lists each step's status, and the exit code is non-zero if any failed.
# Logs: results/cuda-check/<step>.log.
#
# Usage:  scripts/cuda-check.sh [--full] [--cpu] [--dry-run]
#   --full     benchmarks with the full timing and every size (default: --quick timing, seed and large
#              sizes, about a minute on an H100)
#   --cpu      the same commands on the CPU with tiny sizes (to check this script without a GPU)
#   --dry-run  print the commands, run nothing
# Environment: PYTHON (default python3), TIMEOUT_TESTS, TIMEOUT_BENCH, TIMEOUT_TRAIN (seconds).
set -u

PYTHON="${PYTHON:-python3}"
TIMEOUT_TESTS="${TIMEOUT_TESTS:-420}"
TIMEOUT_BENCH="${TIMEOUT_BENCH:-420}"
TIMEOUT_TRAIN="${TIMEOUT_TRAIN:-300}"
FULL=0
CPU=0
DRY=0
for arg in "$@"; do
    case "$arg" in
        --full) FULL=1 ;;
        --cpu) CPU=1 ;;
        --dry-run) DRY=1 ;;
        -h | --help)
            sed -n '2,18p' "$0"
            exit 0
            ;;
        *)
            echo "cuda-check: unknown option $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "$0")/.." || exit 2
LOGS=results/cuda-check
mkdir -p "$LOGS"

DEVICE=cuda
BENCH_SIZES="seed,large"
BENCH_TIMING=(--quick)
BENCH_ONLY=()
TRAIN_ARGS=(--runs 2)
if [ "$FULL" = 1 ]; then
    BENCH_SIZES="seed,medium,large"
    BENCH_TIMING=()
fi
if [ "$CPU" = 1 ]; then
    DEVICE=cpu
    BENCH_SIZES="seed"
    BENCH_TIMING=(--quick)
    BENCH_ONLY=(--only ReLU Linear SeedMLP-b50)
    TRAIN_ARGS=(--runs 1 --epochs 2 --n-train 100 --n-test 40)
fi

NAMES=()
STATUS=()

run_step() {
    # run_step NAME SECONDS COMMAND...: header, command under timeout, log, status recorded.
    local name="$1" seconds="$2"
    shift 2
    echo
    echo "=================================================================================="
    echo "== $name"
    echo "== $*"
    echo "=================================================================================="
    NAMES+=("$name")
    if [ "$DRY" = 1 ]; then
        STATUS+=("dry run")
        return
    fi
    local started=$SECONDS
    timeout --kill-after=20 "$seconds" "$@" 2>&1 | tee "$LOGS/$name.log"
    local code=${PIPESTATUS[0]}
    local took=$((SECONDS - started))
    if [ "$code" = 0 ]; then
        STATUS+=("ok (${took}s)")
    elif [ "$code" = 124 ] || [ "$code" = 137 ]; then
        STATUS+=("TIMED OUT after ${seconds}s")
    else
        STATUS+=("FAILED with exit code $code (${took}s)")
    fi
}

echo "cuda-check: device $DEVICE, python $PYTHON, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
if [ "$DRY" = 0 ]; then
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
        || echo "cuda-check: $PYTHON cannot import torch"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi

run_step a-cuda-tests "$TIMEOUT_TESTS" \
    "$PYTHON" -m pytest -m cuda -q -x -p no:cacheprovider --ignore=tests/framework/test_cuda.py tests
run_step b-sync-and-graphs "$TIMEOUT_TESTS" \
    "$PYTHON" -m pytest -q -p no:cacheprovider -rs tests/framework/test_cuda.py tests/framework/test_host_reads.py
run_step c-benchmarks "$TIMEOUT_BENCH" \
    "$PYTHON" -m benchmarks --device "$DEVICE" --sizes "$BENCH_SIZES" \
    ${BENCH_TIMING[@]+"${BENCH_TIMING[@]}"} ${BENCH_ONLY[@]+"${BENCH_ONLY[@]}"} \
    --json "results/benchmarks-$DEVICE.json"
run_step d-experiment "$TIMEOUT_TRAIN" \
    "$PYTHON" -m experiment --device "$DEVICE" "${TRAIN_ARGS[@]}" --quiet --json "results/training-$DEVICE.json"

echo
echo "=================================================================================="
echo "== summary (logs in $LOGS/)"
echo "=================================================================================="
failed=0
for i in "${!NAMES[@]}"; do
    printf '  %-20s %s\n' "${NAMES[$i]}" "${STATUS[$i]}"
    case "${STATUS[$i]}" in ok* | "dry run") ;; *) failed=1 ;; esac
done
exit "$failed"
