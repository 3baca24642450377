#!/usr/bin/env bash
# The Adam step of jaxstyle, PyTorch (channels_last) and TensorFlow in one session, interleaved,
# on this machine. The peers' steps are the reference scripts in ../shared/perf (not part of the
# package); they need a venv with torch and tensorflow-cpu and a VGG19 .npz made by
# ../shared/perf/make_vgg19_npz.py (see ../shared/perf/README.md).
#
#   PEER_PY=/path/to/peervenv/bin/python VGG_NPZ=/path/to/vgg19.npz benchmarks/side_by_side.sh [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
PERF=../shared/perf
OUT=benchmarks/results/side_by_side
mkdir -p "$OUT"
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2
for round in $(seq 1 "${1:-2}"); do
  for size in 256x256 384x512; do
    "$PEER_PY" "$PERF/bench_nst.py" --part torch --torch-channels-last --size "$size" --weights "$VGG_NPZ" \
      --steps 10 --warmup 2 --threads 2 --child-out "$OUT/torch_cl_${size}_r$round.json"
  done
  "$PEER_PY" "$PERF/bench_tf.py" --weights "$VGG_NPZ" --sizes 256x256,384x512 --modes graph --out "$OUT/tf_r$round.json" > /dev/null
  .venv/bin/jaxstyle bench --size 256,384x512 --optimizer adam,lbfgs --conv winograd,direct \
    --json "$OUT/jaxstyle_r$round.json" > /dev/null
  .venv/bin/jaxstyle bench --size 256,384x512 --optimizer adam --precision bfloat16 \
    --json "$OUT/jaxstyle_bf16_r$round.json" > /dev/null
done
