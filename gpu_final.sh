#!/usr/bin/env bash
# One prepared GPU session: correctness steps in parallel, then the benchmarks alone.
set -u
mkdir -p "$OUT/logs" results
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/logs/gpu.txt" 2>&1
P=python3
( timeout 200 $P -m pytest -m cuda -q -p no:cacheprovider -rfE --ignore=tests/framework/test_cuda.py tests > "$OUT/logs/a-cuda-tests.log" 2>&1; echo "exit $?" >> "$OUT/logs/a-cuda-tests.log" ) &
( timeout 200 $P -m pytest -q -p no:cacheprovider -rfEs tests/framework/test_cuda.py tests/framework/test_host_reads.py > "$OUT/logs/b-sync-graphs.log" 2>&1; echo "exit $?" >> "$OUT/logs/b-sync-graphs.log" ) &
( timeout 200 $P -m verification --device cuda --profile dev --json "$OUT/verification-cuda.json" > "$OUT/logs/verification-cuda.log" 2>&1; echo "exit $?" >> "$OUT/logs/verification-cuda.log" ) &
( timeout 150 $P -m experiment --device cuda --runs 2 --quiet --json "$OUT/training-cuda.json" > "$OUT/logs/experiment.log" 2>&1; echo "exit $?" >> "$OUT/logs/experiment.log" ) &
wait
echo "== correctness done at $SECONDS s"
for f in a-cuda-tests b-sync-graphs verification-cuda experiment; do echo "--- $f"; tail -4 "$OUT/logs/$f.log"; done
timeout 200 $P -m benchmarks --device cuda --sizes seed,large --quick --json "$OUT/benchmarks-cuda.json" > "$OUT/logs/benchmarks.log" 2>&1; echo "exit $?" >> "$OUT/logs/benchmarks.log"
echo "== benchmarks done at $SECONDS s"
tail -5 "$OUT/logs/benchmarks.log"
