"""Does a print-size run keep its memory budget? Planned tiles against the measured peak.

Runs ``jaxstyle stylize`` at a print size under two memory budgets, for the optimisation's tiles
and the fast method's windows, each in its own process, and records the plan the CLI printed,
the budget and the process's peak resident memory (``ru_maxrss``). A few iterations are enough:
the peak is reached in the first step of the largest tile batch.

    python benchmarks/memory_plan.py --json benchmarks/results/memory_plan.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "jaxstyle" / "assets" / "images"
PHOTO, PAINTING = ASSETS / "chelsea.jpg", ASSETS / "starry_night.jpg"

# (method, long side, budgets in GiB, extra arguments)
CASES = (
    ("gatys", 2048, (3.0, 5.0), ["--iterations", "2", "--stop-tolerance", "0"]),
    ("fast", 4096, (1.0, 2.0), []),
)

# Runs one command and prints its own peak RSS: the children's maximum of a fresh interpreter
# is that one command's.
MEASURE = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(done.stderr); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(done.returncode)"
)


def measure(argv: list[str]) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"{' '.join(argv)} failed: {done.stderr.strip().splitlines()[-1:]}")
    plan = [line for line in done.stderr.splitlines() if "would need about" in line]
    return int(done.stdout.split()[-1]), plan[0] if plan else "whole"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True, help="where to write the results")
    parser.add_argument("--jaxstyle", default=str(Path(sys.executable).with_name("jaxstyle")), help="the CLI to run")
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for method, side, budgets, extra in CASES:
            for budget in budgets:
                output = Path(folder) / f"{method}-{budget}.png"
                argv = [args.jaxstyle, "stylize", str(PHOTO), str(PAINTING), "-o", str(output), "--method", method]
                argv += ["--max-size", str(side), "--memory-budget", str(budget), "--overwrite", *extra]
                peak, plan = measure(argv)
                runs.append({"method": method, "max_size": side, "budget_gib": budget, "peak_gib": peak / 2**30})
                runs[-1].update(within=peak <= budget * 2**30, plan=plan)
                print(f"{method} {side} px, budget {budget:g} GiB: peak {peak / 2**30:.2f} GiB; {plan}", flush=True)
    record = {"host": platform.processor() or platform.machine(), "runs": runs}
    args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
