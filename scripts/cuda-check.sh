#!/usr/bin/env bash
# Check the CUDA paths on a GPU machine, in one go:
#   (a) the verifier on the GPU              python -m verification --device cuda
#   (b) every CUDA test                      pytest -m cuda: CUDA test cases, the verification plugin's
#                                            CUDA spec items, no host sync and CUDA graph replay
#                                            (tests/framework/test_cuda.py), the CPU host-read test
#   (c) the benchmarks at the GPU sizes      python -m benchmarks --device cuda -> benchmarks-cuda.json
#   (d) the experiment on the GPU            python -m experiment --device cuda --runs 2
# Each step runs under `timeout`, prints a header, and a failing step does not stop the others;
# the summary at the end lists each step's status, and the exit code is non-zero if any failed.
# (a) and (b) only check correctness, so --parallel runs them side by side; (c) and (d) time
# things and always run alone.
#
# Usage:  scripts/cuda-check.sh [--full] [--parallel] [--budget] [--cpu] [--dry-run]
#   --full      the verifier with its mutants, benchmarks at every size (default: no mutants on
#               the GPU, since the CPU run already scores them; seed and large sizes)
#   --parallel  run (a) and (b) at the same time, (b) on WORKERS pytest-xdist workers
#   --budget    sized for one command of at most ten minutes: (a) and (b) side by side, (b) without
#               the verification plugin's spec items (they repeat (a)) and with or without xdist;
#               (c) the alternating framework/torch ratio of every case and training step
#               (python -m benchmarks.paired all, printed case by case, so a timeout keeps what
#               was measured) in place of the suite; timeouts 270, 270, 180 and 60 s
#   --cpu       the same commands on the CPU with tiny sizes (to check this script without a GPU)
#   --dry-run   print the commands, run nothing
# Measured on one H100 (16 cores): (a) about 4 min, (b) 2.5 min on 6 workers (2 min on 8 to 12), (c) about 7.5 min (43% done at 190 s)
# (the JSON is written at the end only: a timeout loses it), (d) 25 s; with --parallel about 13 min.
# Environment: PYTHON (default python3), LOGS (default results/cuda-check: logs and JSON results),
# WORKERS (default 6, with --parallel), VERIFY_JOBS (the verifier's worker processes, default 4), TIMEOUT_VERIFY, TIMEOUT_TESTS, TIMEOUT_BENCH,
# TIMEOUT_TRAIN (seconds). Without the package installed (a bare GPU machine, run from the
# repository root), the verification pytest plugin is loaded by module name.
set -u

PYTHON="${PYTHON:-python3}"
TIMEOUT_VERIFY="${TIMEOUT_VERIFY:-600}"
TIMEOUT_TESTS="${TIMEOUT_TESTS:-420}"
TIMEOUT_BENCH="${TIMEOUT_BENCH:-900}"
TIMEOUT_TRAIN="${TIMEOUT_TRAIN:-300}"
WORKERS="${WORKERS:-6}"
VERIFY_JOBS="${VERIFY_JOBS:-4}"
FULL=0
PARALLEL=0
BUDGET=0
CPU=0
DRY=0
for arg in "$@"; do
    case "$arg" in
        --full) FULL=1 ;;
        --parallel) PARALLEL=1 ;;
        --budget) BUDGET=1 PARALLEL=1 ;;
        --cpu) CPU=1 ;;
        --dry-run) DRY=1 ;;
        -h | --help)
            sed -n '2,30p' "$0"
            exit 0
            ;;
        *)
            echo "cuda-check: unknown option $arg (see --help)" >&2
            exit 2
            ;;
    esac
done

cd "$(dirname "$0")/.." || exit 2
LOGS="${LOGS:-results/cuda-check}"
mkdir -p "$LOGS"
STATUS_DIR="$(mktemp -d)"
trap 'rm -rf "$STATUS_DIR"' EXIT

DEVICE=cuda
BENCH_SIZES="seed,large"
BENCH_TIMING=()
BENCH_ONLY=()
VERIFY_ARGS=(--no-mutants)
TEST_ONLY=(-m cuda)
TRAIN_ARGS=(--runs 2)
if [ "$FULL" = 1 ]; then
    BENCH_SIZES="seed,medium,large"
    VERIFY_ARGS=()
fi
if [ "$CPU" = 1 ]; then
    DEVICE=cpu
    BENCH_SIZES="seed"
    BENCH_TIMING=(--quick)
    BENCH_ONLY=(--only ReLU Linear SeedMLP-b50)
    VERIFY_ARGS=(--no-mutants --only Linear ReLU)
    TEST_ONLY=(-m cuda tests/framework/test_cuda.py tests/framework/test_host_reads.py)
    TRAIN_ARGS=(--runs 1 --epochs 2 --n-train 100 --n-test 40)
fi
TEST_WORKERS=()
if [ "$PARALLEL" = 1 ] && "$PYTHON" -c "import xdist" 2>/dev/null; then
    TEST_WORKERS=(-n "$WORKERS")
fi
PAIRED=0
TEST_QUIET=(-q)
if [ "$BUDGET" = 1 ]; then
    TIMEOUT_VERIFY=270 TIMEOUT_TESTS=270 TIMEOUT_BENCH=180 TIMEOUT_TRAIN=60
    VERIFY_JOBS="${VERIFY_JOBS_BUDGET:-6}"
    TEST_ONLY=("${TEST_ONLY[@]}" -p no:verification)
    TEST_QUIET=(-v)  # a test per line: a timeout keeps the verdicts so far
    PAIRED=1
fi

# The package's entry point registers the verification plugin; a bare checkout has none.
if [ "$DRY" = 0 ] && [ "$BUDGET" = 0 ] && ! "$PYTHON" -c "
import sys, importlib.metadata as m
sys.exit(not any(e.name == 'verification' for e in m.entry_points(group='pytest11')))" 2>/dev/null; then
    export PYTEST_PLUGINS=verification.pytest_plugin
    echo "cuda-check: the package is not installed; loading verification.pytest_plugin by name"
fi

NAMES=()

run_step() {
    # run_step NAME SECONDS COMMAND...: header, command under timeout, log, status in STATUS_DIR.
    local name="$1" seconds="$2"
    shift 2
    echo
    echo "=================================================================================="
    echo "== $name"
    echo "== $*"
    echo "=================================================================================="
    NAMES+=("$name")
    if [ "$DRY" = 1 ]; then
        echo "dry run" >"$STATUS_DIR/$name"
        return
    fi
    local started=$SECONDS
    timeout --kill-after=20 "$seconds" "$@" >"$LOGS/$name.log" 2>&1
    local code=$?
    local took=$((SECONDS - started))
    if [ "$code" = 0 ]; then
        echo "ok (${took}s)" >"$STATUS_DIR/$name"
    elif [ "$code" = 124 ] || [ "$code" = 137 ]; then
        echo "TIMED OUT after ${seconds}s" >"$STATUS_DIR/$name"
    else
        echo "FAILED with exit code $code (${took}s)" >"$STATUS_DIR/$name"
    fi
    echo "-- $name: $(cat "$STATUS_DIR/$name"); the log's last lines:"
    tail -n 25 "$LOGS/$name.log"
}

echo "cuda-check: device $DEVICE, python $PYTHON, $(date -u +%Y-%m-%dT%H:%M:%SZ), logs in $LOGS/"
if [ "$DRY" = 0 ]; then
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
        || echo "cuda-check: $PYTHON cannot import torch"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi

verify_step() {
    run_step a-verify "$TIMEOUT_VERIFY" \
        "$PYTHON" -m verification --device "$DEVICE" --jobs "$VERIFY_JOBS" "${VERIFY_ARGS[@]}" \
        --json "$LOGS/verification-$DEVICE.json"
}
tests_step() {
    run_step b-cuda-tests "$TIMEOUT_TESTS" \
        "$PYTHON" -m pytest "${TEST_ONLY[@]}" "${TEST_QUIET[@]}" -p no:cacheprovider -rs ${TEST_WORKERS[@]+"${TEST_WORKERS[@]}"}
}
if [ "$PARALLEL" = 1 ]; then
    NAMES+=(a-verify b-cuda-tests)
    verify_step >"$STATUS_DIR/a.out" 2>&1 &
    tests_step >"$STATUS_DIR/b.out" 2>&1 &
    wait
    cat "$STATUS_DIR/a.out" "$STATUS_DIR/b.out"
else
    verify_step
    tests_step
fi
if [ "$PAIRED" = 1 ]; then
    PAIRED_SIZE=()
    [ "$CPU" = 1 ] && PAIRED_SIZE=(--size seed)
    run_step c-paired "$TIMEOUT_BENCH" \
        "$PYTHON" -m benchmarks.paired all --device "$DEVICE" --rounds 5 ${PAIRED_SIZE[@]+"${PAIRED_SIZE[@]}"}
else
    run_step c-benchmarks "$TIMEOUT_BENCH" \
        "$PYTHON" -m benchmarks --device "$DEVICE" --sizes "$BENCH_SIZES" \
        ${BENCH_TIMING[@]+"${BENCH_TIMING[@]}"} ${BENCH_ONLY[@]+"${BENCH_ONLY[@]}"} \
        --json "$LOGS/benchmarks-$DEVICE.json"
fi
run_step d-experiment "$TIMEOUT_TRAIN" \
    "$PYTHON" -m experiment --device "$DEVICE" "${TRAIN_ARGS[@]}" --quiet --json "$LOGS/training-$DEVICE.json"

echo
echo "=================================================================================="
echo "== summary (logs and results in $LOGS/)"
echo "=================================================================================="
failed=0
for name in "${NAMES[@]}"; do
    status="$(cat "$STATUS_DIR/$name" 2>/dev/null || echo "did not run")"
    printf '  %-20s %s\n' "$name" "$status"
    case "$status" in ok* | "dry run") ;; *) failed=1 ;; esac
done
exit "$failed"
