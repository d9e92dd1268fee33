"""Shared helpers for the side-by-side benchmarks.

Every benchmark times dareblopy and its peers in one process (or, for
DareBlopy 0.0.5, which only has wheels for Python <= 3.8, in a helper process
started from the same run over the same data), takes the median of repeated
runs and prints ratios, because absolute times on shared machines are noise.
"""
from __future__ import annotations

import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("DBR_BENCH_DATA", os.path.join(ROOT, ".bench-data"))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
# The DareBlopy 0.0.5 interpreter (`make peers` creates it).
LEGACY_PYTHON = os.environ.get("DBR_LEGACY_PYTHON", os.path.join(ROOT, ".venv38", "bin", "python"))


def median_time(fn: Callable[[], object], repeats: int = 15, warmup: int = 2) -> float:
    """Median wall time of fn() in seconds over `repeats` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(fns: Dict[str, Callable[[], object]], repeats: int = 15,
                      warmup: int = 2) -> Dict[str, List[float]]:
    """Every run's time of each function, with the runs interleaved (A B C
    A B C ...) so that machine noise hits every contender alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def interleaved_medians(fns: Dict[str, Callable[[], object]], repeats: int = 15,
                        warmup: int = 2) -> Dict[str, float]:
    """Median time of each function over interleaved runs."""
    return {name: statistics.median(t)
            for name, t in interleaved_times(fns, repeats, warmup).items()}


def paired_ratio(a: List[float], b: List[float]) -> float:
    """Median over rounds of a[i] / b[i]: for two contenders of one
    interleaved run, robust to the machine drifting between rounds."""
    return statistics.median(x / y for x, y in zip(a, b))


def readinto_limit(paths: List[str]) -> Callable[[], None]:
    """The physical limit of reading files from Python: open + readinto
    into one preallocated buffer (no allocation, no page faults)."""
    buf = bytearray(max(os.path.getsize(p) for p in paths))

    def run():
        for p in paths:
            with open(p, "rb", buffering=0) as fh:
                fh.readinto(buf)
    return run


def legacy_available() -> bool:
    if not os.path.exists(LEGACY_PYTHON):
        return False
    # From a neutral directory: in the checkout, `import dareblopy` is ours.
    probe = subprocess.run([LEGACY_PYTHON, "-c", "import dareblopy"], capture_output=True,
                           cwd=tempfile.gettempdir())
    return probe.returncode == 0


def run_legacy(code: str, timeout: float = 600) -> Optional[dict]:
    """Runs `code` under DareBlopy 0.0.5's interpreter.  The code must print
    one JSON object on its last line; returns it, or None if that
    interpreter is missing."""
    if not legacy_available():
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(TIMING_PRELUDE + code)
        script = fh.name
    try:
        out = subprocess.run([LEGACY_PYTHON, script], capture_output=True, text=True,
                             timeout=timeout, cwd=tempfile.gettempdir())
    finally:
        os.unlink(script)
    if out.returncode != 0:
        print(f"  (DareBlopy 0.0.5 run failed: {out.stderr.strip()[-300:]})")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# The same median timer, for code that runs under the legacy interpreter.
TIMING_PRELUDE = ("import json, statistics, time\nfrom typing import Callable\n"
                  + inspect.getsource(median_time))


# Every table printed in this process, for run_all.py's charts.
TABLES: List[dict] = []


def print_table(title: str, rows: List[dict], baseline: str, unit_label: str = "time") -> None:
    """Prints rows of {'name', 'seconds', optional 'items', 'note'} with a
    ratio column: how many times faster than `baseline` each row is."""
    base = next(r for r in rows if r["name"] == baseline)["seconds"]
    TABLES.append({"title": title, "baseline": baseline,
                   "rows": [{"name": r["name"], "speed": (base / r["seconds"]) if r["seconds"] else None,
                             "note": r.get("note", "")} for r in rows]})
    print(f"\n== {title}")
    print(f"{'contender':44s} {unit_label:>12s} {'speed vs ' + baseline:>24s}  note")
    for r in rows:
        secs = r["seconds"]
        if secs is None:
            print(f"{r['name']:44s} {'n/a':>12s} {'':>24s}  {r.get('note', '')}")
            continue
        shown = f"{secs * 1e3:9.3f} ms"
        if r.get("items"):
            shown = f"{secs / r['items'] * 1e6:9.2f} us"
        print(f"{r['name']:44s} {shown:>12s} {base / secs:23.2f}x  {r.get('note', '')}")


def save_results(name: str, payload: dict) -> str:
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, name + ".json")
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=2)
    return path


if ROOT not in sys.path:  # benchmarks import the checkout's dareblopy
    sys.path.insert(0, ROOT)
