#!/usr/bin/env bash
# One run on a machine with an accelerator (or on a CPU, to try it): the tests, then `jaxstyle
# bench` for both methods at 512 and 1024 px with batches 1-16, a folder of 48 photos and a
# one-photo run with the fast method, all timed as whole processes; one JSON at the end.
#
#   bash benchmarks/device_check.sh [OUT_DIR]        (default: benchmarks/results/device)
#
# Environment:
#   PYTHON      the Python with jaxstyle and the accelerator's JAX (default: .venv/bin/python, else
#               python3); e.g. `pip install -e '.[cuda12,test]'` on an NVIDIA GPU.
#   QUICK=1     small sizes and batches (a CPU smoke run of this script: about 2 minutes).
#   SKIP_TESTS=1
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
OUT="${1:-benchmarks/results/device}"
mkdir -p "$OUT"
if [ "${QUICK:-0}" = 1 ]; then
  SIZES=128; BATCHES=1,2; MAX=128; FOLDER=6
else
  SIZES=512,1024; BATCHES=1,2,4,8,16; MAX=512; FOLDER=48
fi
JAXSTYLE=("$PYTHON" -m jaxstyle)
export JAX_COMPILATION_CACHE_DIR="$OUT/xla-cache"
rm -rf "$JAX_COMPILATION_CACHE_DIR"

"$PYTHON" - <<'EOF' > "$OUT/device.json"
import json, platform, jax
print(json.dumps({"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
                  "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
                  "python": platform.python_version()}))
EOF

if [ "${SKIP_TESTS:-0}" != 1 ]; then
  set +e
  "$PYTHON" -m pytest -q -p no:cacheprovider > "$OUT/tests.txt" 2>&1
  echo $? > "$OUT/tests.rc"
  set -e
fi

"${JAXSTYLE[@]}" -q bench --method fast --size "$SIZES" --batch "$BATCHES" --json "$OUT/bench_fast.json" > "$OUT/bench_fast.txt"
"${JAXSTYLE[@]}" -q bench --method gatys --optimizer lbfgs --size "$SIZES" --batch "$BATCHES" \
  --json "$OUT/bench_gatys.json" > "$OUT/bench_gatys.txt"

# The folder and the photo, cold (empty compile cache) then warm, as whole processes.
"$PYTHON" - "$OUT" "$FOLDER" "$MAX" <<'EOF'
import json, os, shutil, subprocess, sys, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
import fast_e2e

out, count, size = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
fast_e2e.FOLDER_COUNT = count
folder = fast_e2e.make_folder(out / "photos")[0].parent
style = str(fast_e2e.STYLE)
command = [sys.executable, "-m", "jaxstyle", "-q"]
runs = {}
for kind in ("cold", "warm"):  # the warm runs reuse the compile cache the cold ones filled
    shutil.rmtree(out / "styled", ignore_errors=True)
    runs[f"folder_{kind}"] = fast_e2e.timed(
        [*command, "batch", style, "--input", str(folder), "--output", str(out / "styled"), "--method", "fast",
         "--max-size", size], dict(os.environ))
    runs[f"photo_{kind}"] = fast_e2e.timed(
        [*command, "stylize", str(folder / "photo02.jpg"), style, "-o", str(out / "photo.png"), "--method", "fast",
         "--max-size", size, "--overwrite"], dict(os.environ))
(out / "runs.json").write_text(json.dumps(runs))
shutil.rmtree(out / "photos"); shutil.rmtree(out / "styled", ignore_errors=True)
EOF

"$PYTHON" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def read(name):
    path = out / name
    return json.loads(path.read_text()) if path.exists() else None
record = {
    "device": read("device.json"),
    "tests_exit_code": int((out / "tests.rc").read_text()) if (out / "tests.rc").exists() else None,
    "tests_tail": (out / "tests.txt").read_text().splitlines()[-3:] if (out / "tests.txt").exists() else None,
    "bench_fast": read("bench_fast.json"),
    "bench_gatys": read("bench_gatys.json"),
    "end_to_end": read("runs.json"),
}
(out / "device_check.json").write_text(json.dumps(record, indent=1) + "\n")
print(json.dumps({k: record[k] for k in ("device", "tests_exit_code", "end_to_end")}, indent=1))
EOF
rm -rf "$JAX_COMPILATION_CACHE_DIR"
