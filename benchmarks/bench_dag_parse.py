"""Parse time of each DAG file, as the DAG processor pays it: a fresh interpreter with airflow.sdk
already imported (every parse does that once), then the file itself, repeated.

    python benchmarks/bench_dag_parse.py [--repeat 5]

Also shows what the cost would be if the file imported the heavy stack at the top (torch, feast,
mlflow, great_expectations), measured in the same run, so the ratio is the point of the rule.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

DAGS = Path(__file__).resolve().parents[1] / "dags"
PROBE = """
import sys, time, runpy
import airflow.sdk
t = time.perf_counter()
{extra}
runpy.run_path(sys.argv[1])
print(time.perf_counter() - t)
"""
HEAVY = "import torch, feast, mlflow, great_expectations"


def parse_seconds(path: Path, extra: str = "") -> float:
    out = subprocess.run([sys.executable, "-c", PROBE.format(extra=extra), str(path)], capture_output=True,
                         text=True, check=True, env={"AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PATH": ""})
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    worst = 0.0
    for path in sorted(DAGS.glob("*.py")):
        runs = [parse_seconds(path) for _ in range(args.repeat)]
        med = statistics.median(runs)
        worst = max(worst, med)
        print(f"{path.name:<24} parse median {med * 1000:7.1f} ms  max {max(runs) * 1000:7.1f} ms  (n={args.repeat})")
    heavy = statistics.median(parse_seconds(sorted(DAGS.glob("*.py"))[0], HEAVY) for _ in range(3))
    print(f"same file with the heavy stack imported at the top: {heavy * 1000:.0f} ms "
          f"({heavy / worst:.0f}x the slowest DAG file)")
    return 0 if worst < 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
