"""JPEG decoding: dareblopy against a plain C loop over libjpeg-turbo (the
physical limit), Pillow, simplejpeg, OpenCV and DareBlopy 0.0.5.

Data: real photographs (benchmarks/photos.py: crops of the photos shipped in
scikit-learn's and matplotlib's wheels, re-encoded by Pillow at quality
85-95 with mixed subsampling, one in eight progressive).

1. single-thread decode of 256x256 photos to RGB, in memory;
2. the batch decoder on 1 and 2 threads (throughput ratio);
3. a fused RandomResizedCrop to 224x224 of ~500x375 photos, against full
   decode + crop + resize with Pillow and with OpenCV (the same boxes);
4. the same crops of seekable rewrites of those photos (jpeg_make_seekable:
   restart markers every k MCUs) against the originals, for several k: the
   size cost and the speed gain, beside the whole-image decode limit.

The C floor is compiled at run time with the system compiler and libjpeg's
pkg-config flags and kept running beside the benchmark: each of its turns
in the interleaved loop is one pass over the files, requested through a
pipe (the round trip adds well under 0.1 us per image).
"""
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import (DATA_DIR, interleaved_medians, interleaved_times, paired_ratio,  # noqa: E402
                     print_table, run_legacy, save_results)
import photos  # noqa: E402

import numpy as np  # noqa: E402

import dareblopy as db  # noqa: E402
from dareblopy._ffi import lib  # noqa: E402

COUNT_256 = 200
COUNT_RRC = 100
REPEATS = 25
FLOOR = "C loop over libjpeg-turbo [limit]"


def optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None


def build_floor():
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "libjpeg"], capture_output=True,
                           text=True)
    exe = os.path.join(tempfile.gettempdir(), f"dbr_c_decode_floor_{os.getpid()}")
    cmd = [cc, "-O2", os.path.join(HERE, "c_decode_floor.c"), "-o", exe] + flags.stdout.split()
    if flags.returncode != 0 or subprocess.run(cmd).returncode != 0:
        return None
    return exe


def start_floor(exe, names):
    """The C loop as a contender: a callable that runs one pass."""
    proc = subprocess.Popen([exe] + names, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def one_pass():
        proc.stdin.write(b"\n")
        proc.stdin.flush()
        float(proc.stdout.readline())
    return proc, one_pass


def c_floor_seconds(names, passes: int = 5) -> float:
    """Median seconds per image of the C loop over these files (None
    without a C compiler): the raw decode limit for other benchmarks."""
    exe = build_floor()
    if not exe:
        return None
    proc = subprocess.Popen([exe] + list(names), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        times = []
        for _ in range(passes):
            proc.stdin.write(b"\n")
            proc.stdin.flush()
            times.append(float(proc.stdout.readline()))
    finally:
        proc.stdin.close()
        proc.wait()
        os.unlink(exe)
    return sorted(times)[len(times) // 2] / len(names)


def pil_decoder():
    PIL = optional("PIL.Image")
    if not PIL:
        return None
    from PIL import Image
    return Image


def bench_single(exe):
    names = photos.write_photo_dir(os.path.join(DATA_DIR, "jpeg_256"), COUNT_256, (256, 256),
                                   seed=256)
    blobs = [open(n, "rb").read() for n in names]
    Image = pil_decoder()
    simplejpeg = optional("simplejpeg")
    cv2 = optional("cv2")
    out = np.empty((256, 256, 3), np.uint8)

    def each(decode, items):
        # Results are dropped at once, as a training loop would: keeping 200
        # arrays alive would time the allocator's fresh pages, not decoding.
        def run():
            for item in items:
                decode(item)
        return run

    fns = {
        "dareblopy.decode_jpeg(bytes)": each(db.decode_jpeg, blobs),
        "dareblopy.decode_jpeg(bytes, out=)": each(lambda b: db.decode_jpeg(b, out=out), blobs),
        "dareblopy.read_jpg_as_numpy(path)": each(db.read_jpg_as_numpy, names),
    }
    if Image:
        fns["Pillow open+convert('RGB')+asarray"] = each(
            lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), blobs)
    if simplejpeg:
        fns["simplejpeg.decode_jpeg"] = each(simplejpeg.decode_jpeg, blobs)
    if cv2:
        cv2.setNumThreads(1)
        fns["cv2.imdecode (BGR)"] = each(
            lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), blobs)
    proc = None
    if exe:
        proc, fns[FLOOR] = start_floor(exe, names)
    try:
        runs = interleaved_times(fns, repeats=REPEATS)
        t = {k: statistics.median(v) for k, v in runs.items()}
    finally:
        if proc:
            proc.stdin.close()
            proc.wait()
    floor = t.pop(FLOOR, None)
    legacy = run_legacy(f"""
import dareblopy as db
names = {names!r}
def run():
    for n in names:
        db.read_jpg_as_numpy(n)
print(json.dumps({{"seconds": median_time(run, repeats={REPEATS})}}))
""")
    rows = [{"name": FLOOR, "seconds": floor, "items": COUNT_256,
             "note": "" if floor else "no C compiler"}]
    rows += [{"name": k, "seconds": v, "items": COUNT_256} for k, v in t.items()]
    for peer, mod in (("Pillow", Image), ("simplejpeg", simplejpeg), ("cv2", cv2)):
        if mod is None:
            rows.append({"name": peer, "seconds": None, "note": "not installed"})
    rows.append({"name": "DareBlopy 0.0.5 read_jpg_as_numpy (py3.8)",
                 "seconds": legacy["seconds"] if legacy else None, "items": COUNT_256,
                 "note": "" if legacy else "not installed"})
    base = "Pillow open+convert('RGB')+asarray" if Image else "dareblopy.decode_jpeg(bytes)"
    print_table(f"single-thread decode of {COUNT_256} photos 256x256 to RGB", rows, baseline=base,
                unit_label="per image")
    ours = t["dareblopy.decode_jpeg(bytes)"]
    summary = {"per_image_seconds": {r["name"]: (r["seconds"] / COUNT_256 if r["seconds"] else None)
                                     for r in rows}}
    # Ratios are paired per interleaved round (the machine drifts between rounds).
    mine = runs["dareblopy.decode_jpeg(bytes)"]
    if floor:
        ratio = paired_ratio(mine, runs[FLOOR])
        summary["ratio_to_c_floor"] = ratio
        print(f"dareblopy.decode_jpeg / C loop = {ratio:.3f}x the time (bar: <= 1.10)")
        print(f"  with out=: {paired_ratio(runs['dareblopy.decode_jpeg(bytes, out=)'], runs[FLOOR]):.3f}x")
    if Image:
        speed = paired_ratio(runs["Pillow open+convert('RGB')+asarray"], mine)
        summary["speedup_vs_pillow"] = speed
        print(f"dareblopy.decode_jpeg is {speed:.2f}x faster than Pillow (bar: >= 1.5)")
    return blobs, summary


def bench_batch(blobs):
    out = np.empty((len(blobs), 256, 256, 3), np.uint8)
    t = interleaved_medians({
        "decode_jpeg_batch threads=1": lambda: db.decode_jpeg_batch(blobs, out=out, threads=1),
        "decode_jpeg_batch threads=2": lambda: db.decode_jpeg_batch(blobs, out=out, threads=2),
    }, repeats=REPEATS)
    rows = [{"name": k, "seconds": v, "items": len(blobs)} for k, v in t.items()]
    print_table(f"batch decode of {len(blobs)} photos 256x256 into one array", rows,
                baseline="decode_jpeg_batch threads=1", unit_label="per image")
    scaling = t["decode_jpeg_batch threads=1"] / t["decode_jpeg_batch threads=2"]
    print(f"2-thread throughput = {scaling:.2f}x single-thread (bar: >= 1.8; {os.cpu_count()} "
          f"CPUs, load average {os.getloadavg()[0]:.2f} at the end)")
    return {"two_thread_scaling": scaling}


def bench_rrc():
    names = photos.write_photo_dir(os.path.join(DATA_DIR, "jpeg_500x375"), COUNT_RRC, (500, 375),
                                   seed=500)
    blobs = [open(n, "rb").read() for n in names]
    seed = 7
    boxes = [db.crop_box(500, 375, i, crop="random", size=(224, 224), flip="random", seed=seed)
             for i in range(len(blobs))]
    Image = pil_decoder()
    cv2 = optional("cv2")
    out = np.empty((len(blobs), 224, 224, 3), np.uint8)

    def ours():
        db.decode_jpeg_batch(blobs, out=out, size=(224, 224), crop="random", flip="random",
                             seed=seed, threads=1)

    def ours_with(strict):
        return lambda: db.decode_jpeg_batch(blobs, out=out, size=(224, 224), crop="random",
                                            flip="random", seed=seed, threads=1, strict=strict)

    # The crop-consistency rule's cost: the default looks for the scan's end
    # marker below the crop (strict=False reads nothing below the crop and
    # otherwise does the same work on valid files; strict=True entropy-
    # decodes the rest of every image).
    check_runs = interleaved_times({"default": ours, "no check": ours_with(False),
                                    "strict": ours_with(True)}, repeats=REPEATS)
    check_cost = paired_ratio(check_runs["default"], check_runs["no check"])
    strict_cost = paired_ratio(check_runs["strict"], check_runs["no check"])
    print(f"fused RRC, crop-consistency check: default / no check (strict=False) = "
          f"{check_cost:.3f}x the time; strict=True / no check = {strict_cost:.3f}x")
    fns = {"dareblopy fused RRC (1 thread)": ours}
    if Image:
        def pillow():
            for b, ((x, y, w, h), flip) in zip(blobs, boxes):
                img = Image.open(io.BytesIO(b)).convert("RGB")
                img = img.resize((224, 224), Image.BILINEAR, box=(x, y, x + w, y + h))
                if flip:
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
                np.asarray(img)
        fns["Pillow decode + resize(box) + flip"] = pillow
    if cv2:
        def opencv():
            for b, ((x, y, w, h), flip) in zip(blobs, boxes):
                img = cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
                x, y, w, h = int(x), int(y), int(w), int(h)
                img = cv2.resize(img[y:y + h, x:x + w], (224, 224), interpolation=cv2.INTER_LINEAR)
                if flip:
                    img = img[:, ::-1]
        fns["OpenCV imdecode + crop + resize + flip"] = opencv
    t = interleaved_medians(fns, repeats=REPEATS)
    rows = [{"name": k, "seconds": v, "items": len(blobs),
             "note": f"{len(blobs) / v:7.0f} images/s"} for k, v in t.items()]
    if not Image:
        rows.append({"name": "Pillow", "seconds": None, "note": "not installed"})
    if not cv2:
        rows.append({"name": "OpenCV", "seconds": None, "note": "not installed"})
    base = "Pillow decode + resize(box) + flip" if Image else "dareblopy fused RRC (1 thread)"
    print_table(f"RandomResizedCrop 224 of {len(blobs)} photos 500x375, one thread", rows,
                baseline=base, unit_label="per image")
    return {"images_per_second": {k: len(blobs) / v for k, v in t.items()},
            "crop_check_time_ratio": check_cost, "strict_time_ratio": strict_cost}


SEEK_INTERVALS = (1, 2, 4, 8, 0xFFFF)  # 0xFFFF: one marker per MCU row


def bench_seekable():
    names = photos.write_photo_dir(os.path.join(DATA_DIR, "jpeg_500x375"), COUNT_RRC, (500, 375),
                                   seed=500)
    blobs = [open(n, "rb").read() for n in names]
    size = sum(map(len, blobs))
    variants = {"originals": blobs}
    for k in SEEK_INTERVALS:
        label = "per row" if k == 0xFFFF else f"k={k}"
        if k == lib.DBR_JPEG_SEEKABLE_MCUS:
            label += " (default)"
        variants[f"seekable {label}"] = [db.jpeg_make_seekable(b, k) for b in blobs]
    out = np.empty((len(blobs), 224, 224, 3), np.uint8)

    def rrc(items):
        return lambda: db.decode_jpeg_batch(items, out=out, size=(224, 224), crop="random",
                                            flip="random", seed=7, threads=1)
    runs = interleaved_times({k: rrc(v) for k, v in variants.items()}, repeats=REPEATS)
    limit = c_floor_seconds(names)
    rows = [{"name": "C loop, whole originals [limit]", "seconds": limit * len(blobs)
             if limit else None, "items": len(blobs),
             "note": "whole-image decode, no crop" if limit else "no C compiler"}]
    result = {"size_cost": {}, "speedup": {}}
    for k, items in variants.items():
        cost = sum(map(len, items)) / size - 1
        speed = paired_ratio(runs["originals"], runs[k])
        rows.append({"name": k, "seconds": statistics.median(runs[k]), "items": len(items),
                     "note": f"size {cost:+.2%}, {speed:.2f}x the originals"})
        result["size_cost"][k], result["speedup"][k] = cost, speed
    print_table(f"RandomResizedCrop 224 of {len(blobs)} photos 500x375 (1 in 8 progressive), "
                f"seekable rewrites vs originals, one thread", rows, baseline="originals",
                unit_label="per image")
    default = next(k for k in variants if k.endswith("(default)"))
    best = statistics.median(runs[default]) / len(blobs)
    print(f"seekable (default interval): size {result['size_cost'][default]:+.2%} (bar: <= 3%), "
          f"RRC {result['speedup'][default]:.2f}x the originals (bar: >= 1.3x)")
    if limit:
        print(f"  {1 / best:.0f} images/s = {limit / best:.2f}x the whole-image decode limit "
              f"({1 / limit:.0f} images/s, one thread)")
        result["times_whole_decode_limit"] = limit / best
    return result


def bench_entries():
    """Shard to pixels: decode_jpeg_entries (C workers read the entries)
    against read_many + decode_jpeg_batch (bytes through Python)."""
    import zipfile
    names = photos.write_photo_dir(os.path.join(DATA_DIR, "jpeg_500x375"), COUNT_RRC, (500, 375),
                                   seed=500)
    shard = os.path.join(DATA_DIR, "jpeg_500x375_stored.zip")
    if not os.path.exists(shard):
        with zipfile.ZipFile(shard + ".tmp", "w", zipfile.ZIP_STORED) as z:
            for n in names:
                z.write(n, os.path.basename(n))
        os.replace(shard + ".tmp", shard)
    out = np.empty((len(names), 224, 224, 3), np.uint8)
    options = dict(out=out, size=(224, 224), crop="random", flip="random", seed=7, threads=1)
    with db.open_zip_archive(shard) as archive:
        entries = archive.namelist()
        indices = list(range(len(entries)))
        runs = interleaved_times({
            "decode_jpeg_entries(archive, indices)":
                lambda: db.decode_jpeg_entries(archive, indices, **options),
            "read_many + decode_jpeg_batch":
                lambda: db.decode_jpeg_batch(archive.read_many(entries, threads=1), **options),
        }, repeats=REPEATS)
    rows = [{"name": k, "seconds": statistics.median(v), "items": len(names)}
            for k, v in runs.items()]
    print_table(f"zip shard to pixels: RandomResizedCrop 224 of {len(names)} stored entries, "
                f"one thread", rows, baseline="read_many + decode_jpeg_batch",
                unit_label="per image")
    ratio = paired_ratio(runs["read_many + decode_jpeg_batch"],
                         runs["decode_jpeg_entries(archive, indices)"])
    print(f"decode_jpeg_entries is {ratio:.3f}x as fast as read_many + decode_jpeg_batch")
    return {"entries_speedup": ratio}


def main():
    exe = build_floor()
    try:
        blobs, single = bench_single(exe)
    finally:
        if exe and os.path.exists(exe):
            os.unlink(exe)
    batch = bench_batch(blobs)
    rrc = bench_rrc()
    entries = bench_entries()
    seekable = bench_seekable()
    save_results("jpeg", {"single": single, "batch": batch, "rrc": rrc, "entries": entries,
                          "seekable": seekable})


if __name__ == "__main__":
    main()
