"""Runs every benchmark in this directory (bench_*.py), in name order.

This is `make demo`: each benchmark generates its own data, runs dareblopy
beside its peers and prints a ratio table."""
import glob
import os
import runpy
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

if __name__ == "__main__":
    only = sys.argv[1:]
    for path in sorted(glob.glob(os.path.join(HERE, "bench_*.py"))):
        name = os.path.basename(path)[:-3]
        if only and name not in only:
            continue
        print(f"\n######## {name}")
        runpy.run_path(path, run_name="__main__")
