"""Reliability counts: the bad-input table, the disk faults, kill -9 during training and its
saves, the other training faults. Runs those test files under pytest (with more kills
than the suite's own run) and records how many cases ran, passed and failed, and the kills.

    python benchmarks/bench_reliability.py [--kills N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from common import machine, machine_line, write_results

ROOT = Path(__file__).resolve().parent.parent
SUITES = {
    "bad input (tests/test_fuzz_cli.py)": "tests/test_fuzz_cli.py",
    "full, nearly full and read-only disk (tests/test_faults_disk.py)": "tests/test_faults_disk.py",
    "training faults: lock, damaged states, divergence, SIGINT (tests/test_train_faults.py)":
        "tests/test_train_faults.py",
    "kill -9 during training and saves (tests/test_train_kills.py)": "tests/test_train_kills.py",
    "corpus and data integrity (tests/test_data_integrity.py)": "tests/test_data_integrity.py",
}


def _run(path: str, kills: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "junit.xml"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_logging=system-out", path,
                        f"--junitxml={report}"], cwd=ROOT, env={**os.environ, "SPARSECIRCUITS_KILLS": str(kills)},
                       check=False)
        seconds = time.perf_counter() - t0
        cases = list(ET.parse(report).getroot().iter("testcase"))
    failed = [c for c in cases if c.find("failure") is not None or c.find("error") is not None]
    skipped = [c for c in cases if c.find("skipped") is not None]
    out = " ".join(c.findtext("system-out") or "" for c in cases)
    kill_counts = [(int(a), int(b)) for a, b in re.findall(r"kills: (\d+) \((\d+) during a save\)", out)]
    return {"cases": len(cases), "passed": len(cases) - len(failed) - len(skipped), "failed": len(failed),
            "skipped": len(skipped), "seconds": round(seconds, 1),
            "kills": sum(k for k, _ in kill_counts), "kills_during_save": sum(s for _, s in kill_counts),
            "failures": [c.get("name") for c in failed]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10, help="kills per killed run (default: 10)")
    args = parser.parse_args()
    info = machine()
    results = {name: _run(path, args.kills) for name, path in SUITES.items()}
    rows = "\n".join(
        f"| {name} | {r['cases']} | {r['passed']} | {r['failed']} | {r['skipped']} | {r['seconds']:.0f} |"
        for name, r in results.items()
    )
    kills = results["kill -9 during training and saves (tests/test_train_kills.py)"]
    markdown = f"""## Reliability (`benchmarks/bench_reliability.py`)

{machine_line(info)}

| suite | cases | passed | failed | skipped | seconds |
|---|---|---|---|---|---|
{rows}

A passed bad-input case exited 2 with a one-line message naming the input, printed no
traceback, wrote nothing and changed nothing it read. kill -9: {kills['kills']} kills survived
({kills['kills_during_save']} while a state was being written), each run resumed to the end
with weights bit-identical and metrics.jsonl and training.json field-for-field identical to a
run never killed; data lost: {'0' if not kills['failed'] else 'see failures'}.
"""
    write_results("reliability", {"machine": info, "kills_per_run": args.kills, "suites": results}, markdown)
    print(markdown)
    return 0 if not any(r["failed"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
