"""Shared helpers for the benchmarks: machine description and writing results.

Each benchmark writes benchmarks/results/NAME.json and replaces its own section of
benchmarks/RESULTS.md, delimited by `<!-- NAME:start -->` and `<!-- NAME:end -->`.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
RESULTS_DIR = HERE / "results"


def machine() -> dict:
    """The machine, software versions and date a figure was measured with."""
    import torch

    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cpu_bf16": _cpu_bf16(),
    }
    try:
        import tokenizers

        info["tokenizers"] = tokenizers.__version__
    except ImportError:
        pass
    return info


def _cpu_bf16() -> str:
    """The CPU's native bfloat16 instruction sets (Linux /proc/cpuinfo flags), for bf16 timings."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return "CPU bf16 support unknown"
    flags = sorted({f for line in text.splitlines() if line.startswith("flags") for f in line.split()
                    if f in ("avx512_bf16", "amx_bf16", "avx_ne_convert")})
    return f"CPU flags {', '.join(flags)}" if flags else "no native bf16 in the CPU flags"


def machine_line(info: dict) -> str:
    """One Markdown line describing where and when a benchmark ran."""
    return (
        f"Measured {info['date']} on {info['machine']}, {info['cpus']} CPU cores, "
        f"Python {info['python']}, torch {info['torch']}."
    )


def write_results(name: str, data: dict, markdown: str) -> None:
    """Write results/NAME.json and replace the NAME section of RESULTS.md."""
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    text = RESULTS_MD.read_text(encoding="utf-8") if RESULTS_MD.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    RESULTS_MD.write_text(text, encoding="utf-8")
