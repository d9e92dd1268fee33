"""WebDataset tar shards: the image pipeline on tar vs the same pipeline on
zip vs webdataset's own pipeline.

The photos of bench_pipeline.py (1000 real photographs of 500x375 in 10
classes) are packed by ``dareblopy pack`` into 4 stored zip shards and into
4 WebDataset tar shards (``KEY.jpg`` + ``KEY.cls``; webdataset reads them
back).  Each contender makes uint8 NHWC batches of 64 at 224x224 with a
random-resized crop (torchvision's RandomResizedCrop: scale (0.08, 1), ratio
(3/4, 4/3)) and a random horizontal flip, plus int64 labels, on 2 cores:

- webdataset: WebDataset over the tar shards, shuffle buffer, Pillow decode
  + crop/resize + flip per sample, batched, in a WebLoader with 2 workers
  (the shards split between them): the usual WebDataset recipe;
- dareblopy on zip: image_classification_dataset(zip_shards(...)) with
  labels from the pack manifest;
- dareblopy on tar: image_classification_dataset(tar_shards(...)), labels
  from the ``cls`` members, each jpg decoded by libdbr straight from the
  tar (read with pread by default, as zip shards are; with mmap=True,
  decoded where it lies in the mapping).

Compressed shards: the same tar shards gzipped (``.tgz``), read by both.
webdataset decompresses them in every epoch; dareblopy decompresses each
once into its cache (timed apart, as the one-time cost) and then reads the
plain copy.

One warm-up epoch each, then the median of 5 interleaved timed epochs.  The
ratios the tar reader aims for: tar >= 0.95x zip, and >= 3x webdataset."""
import gzip
import io
import os
import random
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, interleaved_times, paired_ratio, print_table,  # noqa: E402
                     save_results)
from bench_pipeline import (BATCH, COUNT, HEIGHT, SIZE, WIDTH, make_shard,  # noqa: E402
                            random_resized_box)

import dareblopy as db  # noqa: E402
from dareblopy import _pack  # noqa: E402

SHARDS = 4


def make_shards():
    """4 stored zip shards and 4 tar shards of the same photos, same order."""
    make_shard()  # writes the ImageFolder tree of bench_pipeline
    tree = os.path.join(DATA_DIR, "pipeline", "imagefolder")
    out = {}
    for fmt, ext in (("zip", "zip"), ("tar", "tar")):
        target = os.path.join(DATA_DIR, "tar_bench", f"train.{ext}")
        paths = _pack.shard_paths(target, SHARDS)
        if not all(os.path.exists(p) for p in paths) or not os.path.exists(
                _pack.manifest_path(target)):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            items, classes = _pack.imagefolder_items(tree)
            _pack.pack(items, target, format=fmt, shards=SHARDS, method="stored",
                       progress=False, classes=classes)
        out[fmt] = (target, paths)
    tgz = [p[:-len(".tar")] + ".tgz" for p in out["tar"][1]]
    for plain, packed in zip(out["tar"][1], tgz):
        if not os.path.exists(packed):
            with open(plain, "rb") as src, gzip.open(packed + ".part", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.rename(packed + ".part", packed)
    out["tgz"] = (None, tgz)
    return out


def decompress_once(tgz_paths, cache_dir):
    """Opens each .tgz shard with an empty cache (so each is decompressed):
    the one-time cost, in seconds."""
    shutil.rmtree(cache_dir, ignore_errors=True)
    start = time.perf_counter()
    for shard in db.tar_shards(tgz_paths, cache_dir=cache_dir):
        len(shard)
        shard.close()
    return time.perf_counter() - start


def webdataset_loader(paths):
    import torch
    import webdataset as wds
    from PIL import Image
    torch.set_num_threads(1)

    def augment(sample):
        jpg, cls = sample
        rng = random.Random()
        img = Image.open(io.BytesIO(jpg)).convert("RGB")
        x, y, w, h = random_resized_box(rng, *img.size)
        img = img.resize((SIZE, SIZE), Image.BILINEAR, box=(x, y, x + w, y + h))
        if rng.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return np.asarray(img), int(cls)

    def collate(samples):
        images, labels = zip(*samples)
        return np.stack(images), np.array(labels, dtype=np.int64)

    dataset = (wds.WebDataset(paths, shardshuffle=False, empty_check=False)
               .shuffle(1000).to_tuple("jpg", "cls").map(augment)
               .batched(BATCH, collation_fn=collate, partial=True))
    return wds.WebLoader(dataset, batch_size=None, num_workers=2, persistent_workers=True)


def main():
    shards = make_shards()
    zip_target, zip_paths = shards["zip"]
    _, tar_paths = shards["tar"]
    _, tgz_paths = shards["tgz"]
    cache_dir = os.path.join(DATA_DIR, "tar_bench", "decompressed")
    once = decompress_once(tgz_paths, cache_dir)
    plain_mb = sum(os.path.getsize(p) for p in tar_paths) / 1e6
    print(f"\n.tgz shards: decompressed once into the cache in {once:.2f} s "
          f"({plain_mb:.0f} MB, {plain_mb / once:.0f} MB/s), then read as plain tar")
    zip_labels = db.read_manifest_labels(_pack.manifest_path(zip_target))
    common = dict(size=SIZE, train=True, threads=2, seed=1, rank=0, world_size=1)
    on_zip = db.image_classification_dataset(db.zip_shards(zip_paths), BATCH,
                                             labels=zip_labels, **common)
    on_tar = db.image_classification_dataset(db.tar_shards(tar_paths), BATCH, **common)
    on_tar_mapped = db.image_classification_dataset(db.tar_shards(tar_paths, mmap=True), BATCH,
                                                    **common)
    on_tgz = db.image_classification_dataset(db.tar_shards(tgz_paths, cache_dir=cache_dir),
                                             BATCH, **common)

    def epoch_of(dataset):
        def run():
            images = 0
            for batch in dataset:
                assert batch["data"].shape[1:] == (SIZE, SIZE, 3)
                images += len(batch["labels"])
            assert images == COUNT
        return run

    names = {"tar": "dareblopy pipeline on tar shards", "zip": "dareblopy pipeline on zip shards",
             "mapped": "same, tar mmap=True (decoded in place)",
             "wds": "webdataset pipeline (Pillow, WebLoader 2 workers)",
             "tgz": "dareblopy pipeline on .tgz shards (cached copy)",
             "wds_tgz": "webdataset pipeline on .tgz shards"}
    contenders = {names["tar"]: epoch_of(on_tar), names["mapped"]: epoch_of(on_tar_mapped),
                  names["zip"]: epoch_of(on_zip), names["tgz"]: epoch_of(on_tgz)}
    try:
        def wds_epoch_of(loader):
            def run():
                images = 0
                for data, labels in loader:
                    assert tuple(data.shape[1:]) == (SIZE, SIZE, 3)
                    images += len(labels)
                assert images == COUNT
            return run
        contenders[names["wds"]] = wds_epoch_of(webdataset_loader(tar_paths))
        contenders[names["wds_tgz"]] = wds_epoch_of(webdataset_loader(tgz_paths))
    except ImportError as exc:
        print(f"  (webdataset or torch missing: {exc})")

    times = interleaved_times(contenders, repeats=5, warmup=1)
    medians = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    baseline = names["wds"] if names["wds"] in medians else names["zip"]
    rows = [{"name": k, "seconds": v, "note": f"{COUNT / v:.0f} images/s"}
            for k, v in medians.items()]
    print_table(f"{COUNT} photos {WIDTH}x{HEIGHT} in {SHARDS} shards -> batches of {BATCH} x "
                f"{SIZE}x{SIZE}x3, random-resized crop + flip: tar vs zip vs webdataset",
                rows, baseline=baseline, unit_label="per epoch")
    vs_zip = paired_ratio(times[names["zip"]], times[names["tar"]])
    print(f"\ntar vs zip (same pipeline, paired per round): {vs_zip:.2f}x  (goal >= 0.95x)")
    result = {"images_per_second": {k: COUNT / v for k, v in medians.items()},
              "tar_vs_zip": vs_zip}
    if names["wds"] in times:
        vs_wds = paired_ratio(times[names["wds"]], times[names["tar"]])
        print(f"tar vs webdataset's own pipeline (paired per round): {vs_wds:.2f}x  "
              f"(goal >= 3x)")
        result["tar_vs_webdataset"] = vs_wds
        vs_wds_tgz = paired_ratio(times[names["wds_tgz"]], times[names["tgz"]])
        print(f".tgz shards, dareblopy vs webdataset (paired per round): {vs_wds_tgz:.2f}x")
        result["tgz_vs_webdataset"] = vs_wds_tgz
    result["tgz_decompress_once_seconds"] = once
    save_results("tar", result)


if __name__ == "__main__":
    main()
