"""Does a print-size run keep its memory budget? Planned tiles against the measured peak.

Runs ``jaxstyle stylize`` at a print size under two memory budgets, for the optimisation's tiles
and the fast method's windows, each in its own process, and records the plan the CLI printed,
the budget, the peak the planner expects of it (`gatys_plan.planned_peak_bytes`,
`fast.planned_peak_bytes`) and the process's peak resident memory (``ru_maxrss``): the budget is
what the whole run may use, so the peak must stay within it. Two iterations are enough: the peak
is reached in the first step of the largest tile batch (L-BFGS's memory is allocated whole at the
start). A run the planner refuses is recorded with its message, not measured.

    python benchmarks/memory_plan.py --json benchmarks/results/memory_plan.json
"""

from __future__ import annotations

import argparse
import json
import os
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
    # (at 4096 px the fast method's runtime and full-size arrays alone take ~1.0 GiB: 1 GiB is refused)
    ("fast", 4096, (1.5, 2.0), []),
)

# Runs one command and prints its own peak RSS: the children's maximum of a fresh interpreter
# is that one command's.
MEASURE = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "sys.stderr.write(done.stderr); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024); sys.exit(done.returncode)"
)


def measure(argv: list[str]) -> tuple[int | None, str]:
    """The command's peak RSS in bytes (None where it failed) and the plan line it printed (or its error)."""
    done = subprocess.run([sys.executable, "-c", MEASURE, *argv], capture_output=True, text=True, check=False)
    if done.returncode:
        return None, " ".join(done.stderr.strip().splitlines()[-1:])
    plan = [line for line in done.stderr.splitlines() if "would need about" in line]
    return int(done.stdout.split()[-1]), plan[0] if plan else "whole"


def planned_peak(method: str, side: int, budget: float) -> int:
    """The largest peak the planner expects of the run's scales, in bytes (the same plan the CLI makes)."""
    from jaxstyle import prepare
    from jaxstyle.config import StyleConfig
    from jaxstyle.io.decode import load_image
    from jaxstyle.methods import fast, gatys_plan

    shape = load_image(PHOTO).rgb.shape[:2]
    config = StyleConfig(method=method, max_size=side, memory_budget=budget)
    if method == "fast":
        plan = fast.plan_windows(prepare.fit_long_side(shape, side), config, int(budget * 2**30))
        return fast.planned_peak_bytes(plan)
    plans = gatys_plan.plan_scales(shape, config, int(budget * 2**30))
    return max(gatys_plan.planned_peak_bytes(plan, config) for plan in plans)


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
                runs.append({"method": method, "max_size": side, "budget_gib": budget, "plan": plan})
                if peak is None:
                    print(f"{method} {side} px, budget {budget:g} GiB: refused or failed: {plan}", flush=True)
                    continue
                expected = planned_peak(method, side, budget)
                runs[-1].update(planned_gib=expected / 2**30, peak_gib=peak / 2**30, within=peak <= budget * 2**30)
                print(
                    f"{method} {side} px, budget {budget:g} GiB: planned {expected / 2**30:.2f} GiB, "
                    f"peak {peak / 2**30:.2f} GiB; {plan}",
                    flush=True,
                )
    record = {"host": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "runs": runs}
    args.json.write_text(json.dumps(record, indent=1) + "\n")
    if not all(run.get("within") for run in runs):
        sys.exit("some run went over its budget, or failed")


if __name__ == "__main__":
    main()
