"""End to end: photographic JPEGs in a zip shard become training batches.

1000 photos of 500x375 (real photographs, see photos.py) in 10 classes,
packed by dareblopy into one stored zip shard.  Each contender produces
uint8 NHWC batches of 64 at 224x224, with a random-resized crop
(torchvision's RandomResizedCrop semantics: scale (0.08, 1), ratio (3/4,
4/3)) and a random horizontal flip, plus int64 labels.  Everyone gets the
same 2 cores:

- torch.utils.data.DataLoader(num_workers=2) + Pillow: the usual recipe
  (zipfile read, Image.open, crop + resize, flip, per sample in workers);
- OpenCV in 2 threads: entries read by dareblopy, cv2.imdecode + crop +
  cv2.resize + flip per sample in a thread pool;
- dareblopy: image_classification_dataset over the zip shard, one C call
  per batch (fused crop decode on 2 threads), with the shard read with
  pread (``mmap=False``, the default) and mapped (``mmap=True``);
- dareblopy in skip mode over a copy of the shard with 50 photos cut to
  half their bytes: the cost per good image against the clean epoch.

Each contender runs one warm-up epoch, then the median of timed epochs is
reported as images/s, beside the raw decode limit: 2 threads of a plain C
loop decoding the same photos whole with libjpeg-turbo.
"""
import concurrent.futures
import io
import math
import os
import random
import statistics
import sys
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, interleaved_times, paired_ratio, print_table,  # noqa: E402
                     save_results)
from photos import photo_set  # noqa: E402

import dareblopy as db  # noqa: E402
from dareblopy import _pack  # noqa: E402

COUNT, WIDTH, HEIGHT, CLASSES, BATCH, SIZE = 1000, 500, 375, 10, 64, 224
TRUNCATED = 50
OURS = "dareblopy pipeline (1 C call/batch, 2 threads)"
MAPPED = "dareblopy pipeline, zip shards mmap=True"
DAMAGED = f"dareblopy pipeline, skip mode, {TRUNCATED} photos truncated"


def make_shard() -> str:
    """The photos as an ImageFolder tree, packed into one stored zip."""
    out = os.path.join(DATA_DIR, "pipeline", "train.zip")
    if os.path.exists(out) and os.path.exists(_pack.manifest_path(out)):
        return out
    tree = os.path.join(DATA_DIR, "pipeline", "imagefolder")
    for i, data in enumerate(photo_set(COUNT, (WIDTH, HEIGHT), seed=2024)):
        folder = os.path.join(tree, f"class_{i % CLASSES:02d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{i:05d}.jpg"), "wb") as fh:
            fh.write(data)
    items, classes = _pack.imagefolder_items(tree)
    _pack.pack(items, out, method="stored", progress=False, classes=classes)
    return out


def random_resized_box(rng: random.Random, width: int, height: int):
    """torchvision's RandomResizedCrop box sampling, for the peers."""
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(0.08, 1.0)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


class PillowZipDataset:
    """Map-style dataset for torch: zipfile + Pillow, per sample."""

    def __init__(self, path: str, names, labels):
        self.path, self.names, self.labels = path, names, labels
        self.zip = None

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        from PIL import Image
        if self.zip is None:  # one handle per worker process
            self.zip = zipfile.ZipFile(self.path)
        rng = random.Random(i)
        img = Image.open(io.BytesIO(self.zip.read(self.names[i]))).convert("RGB")
        x, y, w, h = random_resized_box(rng, *img.size)
        img = img.resize((SIZE, SIZE), Image.BILINEAR, box=(x, y, x + w, y + h))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(img), self.labels[i]


def main():
    shard = make_shard()
    labels = db.read_manifest_labels(_pack.manifest_path(shard))
    with zipfile.ZipFile(shard) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
    label_list = [labels[f"{os.path.basename(shard)}/{n}"] for n in names]
    contenders = {}

    by_entry = {key.split("/", 1)[1]: label for key, label in labels.items()}

    def pipeline(path, expected, **options):
        # Labels by entry name, so the damaged copy of the shard has them too.
        dataset = db.image_classification_dataset(db.zip_shards([path], **options), BATCH,
                                                  size=SIZE, train=True,
                                                  labels=lambda key: by_entry[key.split("/", 1)[1]],
                                                  threads=2, seed=1, rank=0, world_size=1,
                                                  on_error="skip")

        def epoch():
            images = 0
            for batch in dataset:
                assert batch["data"].shape[1:] == (SIZE, SIZE, 3)
                images += len(batch["labels"])
            assert images == expected, (images, expected)
        return epoch
    contenders[OURS] = pipeline(shard, COUNT)  # zip shards read with pread (the default)
    contenders[MAPPED] = pipeline(shard, COUNT, mmap=True)
    damaged = damaged_shard(shard)
    contenders[DAMAGED] = pipeline(damaged, COUNT - TRUNCATED)

    try:
        import torch
        from torch.utils.data import DataLoader
        torch.set_num_threads(1)
        loader = DataLoader(PillowZipDataset(shard, names, label_list), batch_size=BATCH,
                            shuffle=True, num_workers=2, persistent_workers=True)

        def torch_epoch():
            images = 0
            for data, lab in loader:
                assert tuple(data.shape[1:]) == (SIZE, SIZE, 3)
                images += len(lab)
            assert images == COUNT
        contenders["torch DataLoader(num_workers=2) + Pillow"] = torch_epoch
    except ImportError:
        print("  (torch not installed: pip install torch==2.13.0)")

    try:
        import cv2
        cv2.setNumThreads(1)
        archive = db.open_zip_archive(shard)
        pool = concurrent.futures.ThreadPoolExecutor(2)

        def cv_one(args):
            raw, seed = args
            rng = random.Random(seed)
            img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            x, y, w, h = random_resized_box(rng, img.shape[1], img.shape[0])
            img = cv2.resize(img[y:y + h, x:x + w], (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)
            return img[:, ::-1] if rng.random() < 0.5 else img

        def opencv_epoch():
            order = np.random.default_rng(0).permutation(COUNT)
            images = 0
            for start in range(0, COUNT, BATCH):
                idx = order[start:start + BATCH]
                raws = archive.read_many([names[i] for i in idx])
                batch = np.stack(list(pool.map(cv_one, zip(raws, idx.tolist()))))
                labs = np.array([label_list[i] for i in idx], dtype=np.int64)
                images += len(labs)
                assert batch.shape[1:] == (SIZE, SIZE, 3)
            assert images == COUNT
        contenders["OpenCV in 2 threads (reads by dareblopy)"] = opencv_epoch
    except ImportError:
        print("  (opencv-python-headless not installed)")

    limit = decode_limit()
    runs = interleaved_times(contenders, repeats=5, warmup=1)
    times = {k: statistics.median(v) for k, v in runs.items()}
    rows = [{"name": k, "seconds": v} for k, v in times.items()]
    baseline = "torch DataLoader(num_workers=2) + Pillow"
    if baseline not in times:
        baseline = rows[0]["name"]
    if limit:
        rows.append({"name": "raw decode limit: C loop, whole images, 2 threads",
                     "seconds": COUNT / limit, "note": "libjpeg-turbo, no crop/resize"})
    for r in rows:
        r["note"] = (r.get("note", "") + f" {COUNT / r['seconds']:.0f} images/s").strip()
    print_table(f"{COUNT} photos {WIDTH}x{HEIGHT} from a zip shard -> batches of {BATCH} x "
                f"{SIZE}x{SIZE}x3, random-resized crop + flip", rows, baseline=baseline,
                unit_label="per epoch")
    ours = times[OURS]
    if limit:
        print(f"\ndareblopy: {COUNT / ours:.0f} images/s = {COUNT / ours / limit:.2f}x the raw "
              f"whole-image decode limit ({limit:.0f} images/s on 2 threads); the fused crop "
              f"decodes only the blocks under each crop, at reduced DCT scale where it can")
    ours_runs = runs[OURS]
    nommap = paired_ratio(ours_runs, runs[MAPPED])
    # Per good image: the damaged epoch delivers COUNT - TRUNCATED images.
    skip_cost = paired_ratio([t / (COUNT - TRUNCATED) for t in runs[DAMAGED]],
                             [t / COUNT for t in ours_runs])
    print(f"\nzip shards mmap=False / mmap=True epoch time (paired median): {nommap:.3f}")
    print(f"skip mode, {TRUNCATED} of {COUNT} photos truncated: {skip_cost:.3f}x the clean "
          f"epoch's time per good image (paired median), "
          f"{COUNT - TRUNCATED} images delivered each epoch")
    save_results("pipeline", {"images_per_second": {k: COUNT / v for k, v in times.items()},
                              "decode_limit_images_per_second": limit,
                              "pread_over_mmap_epoch_time": nommap,
                              "skip_cost_per_good_image": skip_cost})


def damaged_shard(clean: str) -> str:
    """The clean shard with TRUNCATED photos (spread evenly) cut to half
    their bytes, as a download or copy that stopped early leaves them."""
    out = os.path.join(DATA_DIR, "pipeline", f"damaged-{TRUNCATED}.zip")
    if os.path.exists(out):
        return out
    with zipfile.ZipFile(clean) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        cut = set(names[::len(names) // TRUNCATED][:TRUNCATED])
        with db.ZipWriter(out, method="stored") as w:
            for n in names:
                data = z.read(n)
                w.write(n, data[:len(data) // 2] if n in cut else data)
    return out


def decode_limit() -> float:
    """Images/s of the plain C libjpeg-turbo loop (benchmarks/c_decode_floor.c)
    decoding these photos whole, counted for 2 cores."""
    from bench_jpeg import c_floor_seconds
    tree = os.path.join(DATA_DIR, "pipeline", "imagefolder")
    files = sorted(os.path.join(root, f) for root, _, fs in os.walk(tree) for f in fs)
    per_image = c_floor_seconds(files)
    return 2.0 / per_image if per_image else 0.0


if __name__ == "__main__":
    main()
