"""Packing many small files into shards (TorchRecord's "pack small files
into records, then read them with a loader"), for ``dareblopy pack``.

Sources:
  - a directory tree, packed as it is (entry names are relative paths);
  - an ImageFolder-style directory (``labels="imagefolder"``): each top-level
    subdirectory is a class, labels are class indices in sorted order;
  - a list file of ``path label`` lines (paths relative to the list file).

Shards are zip archives (entries keep their relative names, so the labels of
an ImageFolder pack are also recoverable from the names) or TFRecord files
of Examples ``{"path": bytes, "data": bytes[, "label": int64]}``.  Items are
split into contiguous runs, one per shard, after an optional shuffle fixed
by ``seed``.  Shards are written in parallel, one thread per shard (the C
writers release the GIL), each atomically; then a manifest
``<output>.manifest.tsv`` records ``shard, name, label, source`` for every
item, written last and atomically too.
"""
from __future__ import annotations

import concurrent.futures
import os
import sys
import tempfile
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

from ._labels import name_label_lines
from ._shuffle import permutation


class Item(NamedTuple):
    source: str           # OS path of the file to pack
    name: str             # name inside the shard
    label: Optional[int]  # class index, or None for plain trees


def tree_items(src: str) -> List[Item]:
    """Every file under src, sorted by relative path."""
    items = []
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            path = os.path.join(root, f)
            items.append(Item(path, os.path.relpath(path, src).replace(os.sep, "/"), None))
    return items


def imagefolder_items(src: str) -> (List[Item], List[str]):
    """ImageFolder layout: src/<class>/**/<file>; returns items and the
    sorted class names."""
    classes = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    if not classes:
        raise ValueError(f"pack: {src} has no class subdirectories (ImageFolder layout)")
    items = []
    for label, cls in enumerate(classes):
        for item in tree_items(os.path.join(src, cls)):
            items.append(Item(item.source, f"{cls}/{item.name}", label))
    return items, classes


def list_file_items(list_file: str) -> List[Item]:
    """``path label`` lines (TorchRecord's list files); paths are relative
    to the list file."""
    base = os.path.dirname(os.path.abspath(list_file))
    return [Item(path if os.path.isabs(path) else os.path.join(base, path),
                 path.lstrip("/").replace(os.sep, "/"), label)
            for path, label in name_label_lines(list_file)]


def shard_paths(out: str, shards: int) -> List[str]:
    """``out`` for one shard; else ``stem-00000-of-00004.ext``.  A pattern
    with ``{shard}``/``{shards}`` is formatted instead."""
    if "{shard" in out:
        return [out.format(shard=i, shards=shards) for i in range(shards)]
    if shards == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}-{i:05d}-of-{shards:05d}{ext}" for i in range(shards)]


def _zip_shard_writer(path: str, method: str, level: int):
    from ._zip import ZipWriter
    writer = ZipWriter(path, method=method, level=level)
    made = set()

    def add(item: Item, data: bytes) -> None:
        mtime = os.stat(item.source).st_mtime
        parts = item.name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):  # explicit directory entries
            folder = "/".join(parts[:depth]) + "/"
            if folder not in made:
                writer.mkdir(folder, mtime=mtime)
                made.add(folder)
        writer.write(item.name, data, mtime=mtime)
    return writer, add


def _tfrecord_shard_writer(path: str, compression: str):
    from ._example import serialize_example
    from ._tfrecord import TFRecordWriter
    writer = TFRecordWriter(path, compression)

    def add(item: Item, data: bytes) -> None:
        features = {"path": item.name, "data": data}
        if item.label is not None:
            features["label"] = item.label
        writer.write(serialize_example(features))
    return writer, add


def pack(items: Sequence[Item], out: str, *, format: str = "zip", shards: int = 1,
         shuffle: bool = False, seed: int = 0, method: str = "deflate", level: int = 0,
         compression: str = "NONE", workers: int = 0, progress: bool = True,
         classes: Optional[Sequence[str]] = None) -> List[str]:
    """Writes ``items`` into ``shards`` files of ``format`` ("zip" or
    "tfrecord") plus the manifest; returns the shard paths."""
    if shards < 1:
        raise ValueError("pack: --shards must be at least 1")
    if format not in ("zip", "tfrecord"):
        raise ValueError(f"pack: unknown format {format!r} (zip or tfrecord)")
    items = list(items)
    if not items:
        raise ValueError("pack: nothing to pack")
    if shuffle:
        items = [items[i] for i in permutation(len(items), seed)]
    paths = shard_paths(out, shards)
    per = -(-len(items) // shards)
    groups = [items[i * per:(i + 1) * per] for i in range(shards)]
    bar = _progress(len(items), f"packing {len(items)} files into {shards} {format} shard(s)") \
        if progress else None

    def write_shard(path: str, group: List[Item]) -> None:
        if format == "zip":
            writer, add = _zip_shard_writer(path, method, level)
        else:
            writer, add = _tfrecord_shard_writer(path, compression)
        with writer:
            for item in group:
                with open(item.source, "rb") as fh:
                    add(item, fh.read())
                if bar is not None:
                    bar.update(1)

    threads = workers or min(shards, os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        for done in [pool.submit(write_shard, p, g) for p, g in zip(paths, groups)]:
            done.result()  # re-raises the first failure
    if bar is not None:
        bar.close()
    write_manifest(out, paths, groups, classes)
    return paths


def manifest_path(out: str) -> str:
    return out.replace("{shard", "shard").split("{")[0] + ".manifest.tsv"


def write_manifest(out: str, paths: Sequence[str], groups: Sequence[Sequence[Item]],
                   classes: Optional[Sequence[str]]) -> str:
    """``shard<TAB>name<TAB>label<TAB>source`` per item, atomically."""
    target = manifest_path(out)
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            if classes:
                fh.write("# classes\t" + "\t".join(classes) + "\n")
            fh.write("# shard\tname\tlabel\tsource\n")
            for path, group in zip(paths, groups):
                for item in group:
                    label = "" if item.label is None else str(item.label)
                    fh.write(f"{os.path.basename(path)}\t{item.name}\t{label}\t{item.source}\n")
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def read_manifest_labels(path: str) -> Dict[str, int]:
    """Labels from a manifest, keyed as :class:`dareblopy.ZipShard` names
    samples (``<shard file name>/<entry>``)."""
    labels = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("#"):
                continue
            shard, name, label, _ = line.rstrip("\n").split("\t", 3)
            if label:
                labels[f"{shard}/{name}"] = int(label)
    return labels


def _progress(total: int, desc: str):
    """A tqdm bar on stderr, or None when tqdm is missing."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="file", file=sys.stderr, leave=False)
