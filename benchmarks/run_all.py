"""Runs every benchmark in this directory (bench_*.py), in name order, then
draws one PNG chart per table (benchmarks/charts/) and writes a summary
(benchmarks/results/summary.md).

This is `make demo`: each benchmark generates its own data, runs dareblopy
beside its peers and prints a ratio table.  Pass benchmark names to run a
subset, e.g. `python benchmarks/run_all.py bench_zip`."""
import glob
import os
import platform
import re
import runpy
import sys
import textwrap
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _common  # noqa: E402

CHART_DIR = os.path.join(HERE, "charts")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def is_ours(name: str) -> bool:
    """dareblopy's rows: named so, or variants listed under one ("  same, ...")."""
    name = name.strip()
    return "0.0.5" not in name and (name.startswith(("dareblopy", "same,", "decode_jpeg")))


def chart(table: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in table["rows"] if r["speed"]]
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(rows) + 1.8))
    colors = ["#d62728" if is_ours(r["name"]) else
              "#7f7f7f" if "limit" in r["name"] or "floor" in r["name"] else "#1f77b4"
              for r in rows]
    ax.barh([r["name"] for r in rows], [r["speed"] for r in rows], color=colors)
    ax.invert_yaxis()
    ax.axvline(1.0, color="black", linewidth=0.8)
    for i, r in enumerate(rows):
        ax.text(r["speed"], i, f" {r['speed']:.2f}x", va="center", fontsize=8)
    ax.set_xlabel(textwrap.fill(f"speed relative to {table['baseline']} (higher is faster)", 70),
                  fontsize=9)
    ax.set_title(textwrap.fill(table["title"], 70), fontsize=9)
    ax.set_xlim(0, max(r["speed"] for r in rows) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(only):
    failed = []
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)[:-3]
        if only and name not in only:
            continue
        print(f"\n######## {name}", flush=True)
        try:
            runpy.run_path(path, run_name="__main__")
        except Exception:  # one broken peer must not hide the other results
            traceback.print_exc()
            failed.append(name)
    os.makedirs(CHART_DIR, exist_ok=True)
    lines = [f"Machine: {machine()}", ""]
    for table in _common.TABLES:
        slug = re.sub(r"[^a-z0-9]+", "_", table["title"].lower()).strip("_")[:60]
        png = os.path.join(CHART_DIR, slug + ".png")
        try:
            chart(table, png)
        except ImportError:
            png = None
        lines.append(f"### {table['title']}")
        lines.append(f"| contender | speed vs {table['baseline']} | note |")
        lines.append("|---|---|---|")
        for r in table["rows"]:
            speed = f"{r['speed']:.2f}x" if r["speed"] else "n/a"
            lines.append(f"| {r['name']} | {speed} | {r['note']} |")
        if png:
            lines.append(f"\n![{table['title']}](charts/{os.path.basename(png)})")
        lines.append("")
    os.makedirs(_common.RESULTS_DIR, exist_ok=True)
    with open(os.path.join(_common.RESULTS_DIR, "summary.md"), "w") as fh:
        fh.write("\n".join(lines))
    print(f"\ncharts in {CHART_DIR}, summary in {_common.RESULTS_DIR}/summary.md")
    if failed:
        print("benchmarks that failed: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
