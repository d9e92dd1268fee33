"""Reading many small files: dareblopy against open().read().

200 files of ~30 KB (random sizes around 30 KB, random bytes) in a
directory, page cache warm.  Reports the median time per file, the ratio,
the cffi per-call overhead, and readinto into one preallocated buffer as the
physical limit of the Python-visible copy."""
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, interleaved_medians, median_time, print_table, readinto_limit,  # noqa: E402
                     run_legacy, save_results)

import dareblopy as db  # noqa: E402

COUNT = 200


def make_files() -> list:
    folder = os.path.join(DATA_DIR, "files_200x30k")
    names = [os.path.join(folder, f"file_{i:03d}.bin") for i in range(COUNT)]
    if all(os.path.exists(n) for n in names):
        return names
    os.makedirs(folder, exist_ok=True)
    rng = random.Random(1234)
    for n in names:
        with open(n, "wb") as fh:
            fh.write(rng.randbytes(rng.randint(25_000, 35_000)))
    return names


def main():
    names = make_files()
    total = sum(os.path.getsize(n) for n in names)

    def python_open_read():
        for n in names:
            with open(n, "rb") as fh:
                fh.read()

    def dareblopy_open_as_bytes():
        for n in names:
            db.open_as_bytes(n)

    fs = db.FileSystem()
    fs.push_search_path(os.path.dirname(names[0]))
    rel = [os.path.basename(n) for n in names]

    def dareblopy_vfs():
        for n in rel:
            fs.open_as_bytes(n)

    t = interleaved_medians({
        "open().read()": python_open_read,
        "dareblopy.open_as_bytes": dareblopy_open_as_bytes,
        "dareblopy.FileSystem().open_as_bytes": dareblopy_vfs,
        "open().readinto(prealloc) [limit]": readinto_limit(names),
    }, repeats=31)

    legacy = run_legacy(f"""
import dareblopy as db
names = {names!r}
def run():
    for n in names:
        db.open_as_bytes(n)
print(json.dumps({{"seconds": median_time(run, repeats=31)}}))
""")
    rows = [{"name": k, "seconds": v, "items": COUNT} for k, v in t.items()]
    rows.append({"name": "DareBlopy 0.0.5 open_as_bytes (py3.8)",
                 "seconds": legacy["seconds"] if legacy else None, "items": COUNT,
                 "note": "" if legacy else "not installed: make peers"})
    print_table(f"read {COUNT} files, {total / COUNT / 1024:.1f} KiB average, to bytes",
                rows, baseline="open().read()", unit_label="per file")

    # Many short runs (about 1 ms each): on a shared machine a long run is
    # stretched by waits for the CPU, a short one mostly fits in one slice.
    lib = db._lib
    n = 10_000
    call = median_time(lambda: [lib.dbr_version_number() for _ in range(n)], repeats=301) / n
    print(f"\ncffi (ABI mode) per-call overhead: {call * 1e9:.0f} ns per trivial C call")
    ratio = t["open().read()"] / t["dareblopy.open_as_bytes"]
    print(f"ratio open().read() / dareblopy.open_as_bytes = {ratio:.2f} (>= 1.0 means dareblopy is faster)")
    save_results("files", {"per_file_seconds": {k: v / COUNT for k, v in t.items()},
                           "legacy_seconds_per_file": legacy["seconds"] / COUNT if legacy else None,
                           "cffi_call_ns": call * 1e9, "ratio_vs_open_read": ratio})


if __name__ == "__main__":
    main()
