#!/usr/bin/env bash
# jaxstyle, PyTorch (channels_last) and TensorFlow (the tutorial's train_step) on this machine, in
# one session: `jaxstyle bench --compare` times each peer right after jaxstyle at each size.
# Needs a Python with jaxstyle, torch and tensorflow-cpu installed, e.g.
#   python3 -m venv /tmp/peervenv && /tmp/peervenv/bin/pip install -e . torch tensorflow-cpu
#   PEER_PY=/tmp/peervenv/bin/python benchmarks/side_by_side.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=benchmarks/results/side_by_side
JAXSTYLE="$(dirname "$PEER_PY")/jaxstyle"
mkdir -p "$OUT"
for round in $(seq 1 "${1:-2}"); do
  "$JAXSTYLE" bench --size 256,384x512 --optimizer adam,lbfgs --conv winograd,direct \
    --compare torch,tensorflow --json "$OUT/compare_r$round.json" > "$OUT/compare_r$round.txt"
done
"$JAXSTYLE" bench --size 256,384x512 --optimizer adam --precision bfloat16 \
  --json "$OUT/jaxstyle_bf16.json" > /dev/null
