"""ZIP archives: dareblopy against zipfile and DareBlopy 0.0.5.

1. Reading 200 stored entries of ~30 KB (random bytes) to ``bytes`` from an
   archive that is already open; the page cache is warm.  Every contender
   drops each result before the next read (as DareBlopy 0.0.5 is timed);
   a second table keeps all results alive, where fresh memory's page faults
   cost more than the read itself for everyone.  The pread floor is one
   pread per entry into a preallocated buffer at known data offsets.
2. The same with deflate entries (text): zipfile and DareBlopy 0.0.5 inflate
   with zlib, dareblopy decodes each entry whole with libdeflate.
3. Opening an archive of 70,000 small entries (central directory parse and
   index)."""
import os
import random
import sys
import zipfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, interleaved_medians, print_table, run_legacy,  # noqa: E402
                     save_results)

import dareblopy as db  # noqa: E402

COUNT = 200
MANY = 70_000


def make_archives():
    os.makedirs(DATA_DIR, exist_ok=True)
    stored = os.path.join(DATA_DIR, "zip_200x30k_stored.zip")
    deflated = os.path.join(DATA_DIR, "zip_200x30k_deflate.zip")
    many = os.path.join(DATA_DIR, "zip_70k_entries.zip")
    rng = random.Random(1234)
    if not os.path.exists(stored):
        with zipfile.ZipFile(stored + ".tmp", "w", zipfile.ZIP_STORED) as z:
            for i in range(COUNT):
                z.writestr(f"img/{i:04d}.bin", rng.randbytes(rng.randint(25_000, 35_000)))
        os.replace(stored + ".tmp", stored)
    if not os.path.exists(deflated):
        words = [rng.randbytes(6).hex().encode() for _ in range(500)]
        with zipfile.ZipFile(deflated + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
            for i in range(COUNT):
                z.writestr(f"txt/{i:04d}.txt", b" ".join(rng.choice(words) for _ in range(2300)))
        os.replace(deflated + ".tmp", deflated)
    if not os.path.exists(many):
        with zipfile.ZipFile(many + ".tmp", "w", zipfile.ZIP_STORED) as z:
            for i in range(MANY):
                z.writestr(f"shard{i // 1000:02d}/item{i:05d}.txt", str(i))
        os.replace(many + ".tmp", many)
    return stored, deflated, many


def data_offsets(path):
    """(offset, size) of each entry's data, read from the local headers."""
    out = []
    with zipfile.ZipFile(path) as z, open(path, "rb") as fh:
        for info in z.infolist():
            fh.seek(info.header_offset + 26)
            n, m = int.from_bytes(fh.read(2), "little"), int.from_bytes(fh.read(2), "little")
            out.append((info.header_offset + 30 + n + m, info.compress_size))
    return out


def each(read, names):
    """Reads every name, dropping each result at once, as a loader that
    decodes and moves on does: the allocator then reuses warm memory."""
    def run():
        for n in names:
            read(n)
    return run


def keep_all(read, names):
    """Reads every name into a list that holds all results: each read gets
    fresh memory, whose first touch (page faults) costs more than the copy."""
    return lambda: [read(n) for n in names]


def legacy_reads(path, names):
    return run_legacy(f"""
import dareblopy as db
a = db.open_zip_archive({path!r})
names = {names!r}
def each():
    for n in names:
        a.open_as_bytes(n)
def keep_all():
    return [a.open_as_bytes(n) for n in names]
print(json.dumps({{"each": median_time(each, repeats=21),
                   "keep_all": median_time(keep_all, repeats=21)}}))
""")


def bench_reads(path, label):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        total = sum(i.file_size for i in z.infolist())
    ref = zipfile.ZipFile(path)
    ours = db.open_zip_archive(path)
    fast = db.open_zip_archive(path, verify_crc=False)
    pread = db.open_zip_archive(path, mmap=False)
    for n in names:
        assert ours.read(n) == ref.read(n) == pread.read(n)
    fns = {
        "zipfile.ZipFile.read": each(ref.read, names),
        "dareblopy Archive.open_as_bytes": each(ours.open_as_bytes, names),
        "dareblopy open_as_bytes, verify_crc=False": each(fast.open_as_bytes, names),
        "dareblopy open_as_bytes, mmap=False (pread)": each(pread.open_as_bytes, names),
        "zipfile, results kept": keep_all(ref.read, names),
        "dareblopy, results kept": keep_all(ours.open_as_bytes, names),
        "dareblopy read_many (one call, 1 thread), kept": lambda: ours.read_many(names, threads=1),
    }
    if label == "stored":
        offsets = data_offsets(path)
        buf = bytearray(max(s for _, s in offsets))
        fd = os.open(path, os.O_RDONLY)

        def floor():
            for off, size in offsets:
                os.preadv(fd, [memoryview(buf)[:size]], off)
        fns["os.preadv into one buffer [pread floor]"] = floor
    t = interleaved_medians(fns, repeats=21)
    legacy = legacy_reads(path, names) or {}
    rows = [{"name": k, "seconds": v, "items": COUNT} for k, v in t.items()
            if "kept" not in k]
    note = "" if legacy else "not installed"
    rows.append({"name": "DareBlopy 0.0.5 open_as_bytes (py3.8)",
                 "seconds": legacy.get("each"), "items": COUNT, "note": note})
    print_table(f"read {COUNT} {label} entries ({total / COUNT / 1024:.1f} KiB average) to "
                "bytes, each dropped after the read", rows, baseline="zipfile.ZipFile.read",
                unit_label="per entry")
    kept = [{"name": k, "seconds": v, "items": COUNT} for k, v in t.items() if "kept" in k]
    kept.append({"name": "DareBlopy 0.0.5, results kept (py3.8)",
                 "seconds": legacy.get("keep_all"), "items": COUNT, "note": note})
    print_table(f"the same, all {COUNT} results kept in a list (page faults dominate)",
                kept, baseline="zipfile, results kept", unit_label="per entry")
    vs_zipfile = t["zipfile.ZipFile.read"] / t["dareblopy Archive.open_as_bytes"]
    vs_legacy = legacy["each"] / t["dareblopy Archive.open_as_bytes"] if legacy else None
    print(f"dareblopy vs zipfile: {vs_zipfile:.2f}x faster"
          + (f"; vs DareBlopy 0.0.5: {vs_legacy:.2f}x faster" if legacy else ""))
    return {"seconds": t, "legacy_seconds": legacy or None,
            "vs_zipfile": vs_zipfile, "vs_legacy": vs_legacy}


def bench_open(path):
    t = interleaved_medians({
        "zipfile.ZipFile(path)": lambda: zipfile.ZipFile(path).close(),
        "dareblopy.open_zip_archive(path)": lambda: db.open_zip_archive(path).close(),
    }, repeats=9, warmup=1)
    legacy = run_legacy(f"""
import dareblopy as db
print(json.dumps({{"seconds": median_time(lambda: db.open_zip_archive({path!r}), repeats=9)}}))
""")
    rows = [{"name": k, "seconds": v} for k, v in t.items()]
    rows.append({"name": "DareBlopy 0.0.5 open_zip_archive (py3.8)",
                 "seconds": legacy["seconds"] if legacy else None,
                 "note": "" if legacy else "not installed"})
    print_table(f"open an archive of {MANY:,} entries", rows, baseline="zipfile.ZipFile(path)")
    ratio = t["zipfile.ZipFile(path)"] / t["dareblopy.open_zip_archive(path)"]
    print(f"dareblopy opens {ratio:.1f}x faster than zipfile")
    return {"seconds": t, "legacy_seconds": legacy["seconds"] if legacy else None,
            "vs_zipfile": ratio}


def main():
    stored, deflated, many = make_archives()
    results = {"stored": bench_reads(stored, "stored"),
               "deflate": bench_reads(deflated, "deflate"),
               "open_70k": bench_open(many)}
    save_results("zip", results)


if __name__ == "__main__":
    main()
