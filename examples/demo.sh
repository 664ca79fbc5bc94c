#!/usr/bin/env bash
# The main job on one machine, nothing to install: a worker on the embedded
# broker (kombu's filesystem transport in the runs dir), the example project
# submitted to it, its output followed live, a small grid waited for, and
# the runs listed. The runs stay in .demo/runs for `gage-submit list/show`.
set -euo pipefail
cd "$(dirname "$0")/.."
export GAGE_RUNS="${GAGE_RUNS:-$PWD/.demo/runs}"
unset GAGE_BROKER_URL
mkdir -p "$GAGE_RUNS"

gage-worker worker --concurrency 2 --loglevel warning >"$GAGE_RUNS/../worker.log" 2>&1 &
worker=$!
trap 'kill -TERM "$worker" 2>/dev/null; wait "$worker" 2>/dev/null || true' EXIT

echo "== submit one run and follow its output"
gage-submit -C examples/hello train lr=0.05 --follow

echo "== submit a grid of two runs and wait for both"
gage-submit -C examples/hello train 'lr=[0.1,0.2]' epochs=3 --wait

echo "== the runs"
gage-submit list
