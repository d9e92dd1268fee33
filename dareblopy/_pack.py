"""Packing many small files into shards (TorchRecord's "pack small files
into records, then read them with a loader"), for ``dareblopy pack``.

Sources:
  - a directory tree, packed as it is (entry names are relative paths);
  - an ImageFolder-style directory (``labels="imagefolder"``): each top-level
    subdirectory is a class, labels are class indices in sorted order;
  - a list file of ``path label`` lines (paths relative to the list file);
    labels are integers, or class names numbered in sorted order as the
    ImageFolder classes are.

Shards are zip archives (entries keep their relative names, so the labels of
an ImageFolder pack are also recoverable from the names; no directory
entries), TFRecord files of Examples ``{"path": bytes, "data": bytes[,
"label": int64]}``, or WebDataset tar shards (``KEY.ext`` plus ``KEY.cls``
for the label, see :func:`webdataset_names`).  By default a zip entry is stored when its file is
already compressed (by suffix, as ``zip -n`` decides: JPEG, PNG, zip, gz,
...) and deflated otherwise.  Items are split into contiguous runs of equal
size (within one), one per shard, after an optional shuffle fixed by
``seed``; there are never more shards than items.  Shards are written in
parallel, one thread per shard (the C writers release the GIL), each
atomically; then a manifest ``<output>.manifest.tsv`` records ``shard,
name, label, source`` for every item (and the class names), written last
and atomically too.
"""
from __future__ import annotations

import concurrent.futures
import os
import re
import sys
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from ._atomic import atomic_write
from ._labels import name_label_lines
from ._shuffle import permutation
from ._source import manifest_hash_lines

# Suffixes of files that are compressed already: deflating them again costs
# an inflate on every read for well under 1% of size (Info-ZIP's zip -n).
ALREADY_COMPRESSED = frozenset(
    "jpg jpeg jpe jfif png gif webp avif heic heif jxl jp2 tif tiff "
    "mp3 m4a aac ogg oga opus flac mp4 m4v mov mkv webm avi ogv "
    "zip jar whl apk gz tgz bz2 tbz2 xz txz lzma zst zstd lz4 lz br 7z rar".split())


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


def imagefolder_items(src: str) -> Tuple[List[Item], List[str]]:
    """ImageFolder layout: src/<class>/**/<file>; returns items and the
    sorted class names."""
    classes = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))
    if not classes:
        raise ValueError(f"{src} has no class subdirectories: --labels imagefolder expects "
                         f"{src}/<class>/<file>")
    items = []
    for label, cls in enumerate(classes):
        for item in tree_items(os.path.join(src, cls)):
            items.append(Item(item.source, f"{cls}/{item.name}", label))
    return items, classes


def list_file_items(list_file: str) -> Tuple[List[Item], Optional[List[str]]]:
    """``path label`` lines (TorchRecord's list files), paths relative to
    the list file.  Returns the items and, when the labels are class names
    rather than integers, the sorted class names whose indices the labels
    became (as for ImageFolder); None for integer labels."""
    base = os.path.dirname(os.path.abspath(list_file))
    lines = list(name_label_lines(list_file, integer=False))
    texts = [label for _, label in lines]
    if all(t.lstrip("-").isdigit() for t in texts):
        classes, labels = None, [int(t) for t in texts]
    else:  # class names: any label that is not an integer makes them all names
        classes = sorted(set(texts))
        number = {c: i for i, c in enumerate(classes)}
        labels = [number[t] for t in texts]
    items = [Item(path if os.path.isabs(path) else os.path.join(base, path),
                  path.lstrip("/").replace(os.sep, "/"), label)
             for (path, _), label in zip(lines, labels)]
    return items, classes


def shard_paths(out: str, shards: int) -> List[str]:
    """``out`` for one shard; else ``stem-00000-of-00004.ext``.  A pattern
    with ``{shard}``/``{shards}`` is formatted instead."""
    if "{shard" in out:
        return [out.format(shard=i, shards=shards) for i in range(shards)]
    if shards == 1:
        return [out]
    stem, ext = os.path.splitext(out)
    return [f"{stem}-{i:05d}-of-{shards:05d}{ext}" for i in range(shards)]


def earlier_outputs(items: Sequence[Item], out: str) -> List[Item]:
    """The items that are shards or the manifest of a pack to ``out`` (with
    any shard count): what a source folder holds once packed into itself."""
    folder = os.path.dirname(os.path.abspath(out))
    base = os.path.basename(out)
    if "{shard" in base:
        core = r"\d+".join(map(re.escape, re.split(r"\{shards?[^}]*\}", base)))
    else:
        stem, ext = os.path.splitext(base)
        core = re.escape(stem) + r"(-\d+-of-\d+)?" + re.escape(ext)
    # with the temporary names of a pack that was killed (_atomic.py, zip_writer.c)
    shard = re.compile(r"\.?" + core + r"(\.tmp[0-9a-f]{6}|\.[0-9a-f]{12}\.tmp)?$")
    manifest = os.path.abspath(manifest_path(out))
    found = []
    for item in items:
        source = os.path.abspath(item.source)
        if source == manifest or (os.path.dirname(source) == folder
                                  and shard.match(os.path.basename(source))):
            found.append(item)
    return found


def zip_method(name: str, method: str) -> str:
    """The method for entry ``name``: ``method`` itself, or for "auto"
    stored when the suffix says the file is compressed already, else
    deflate."""
    if method != "auto":
        return method
    base = name.rpartition("/")[2]
    suffix = base.rpartition(".")[2].lower() if "." in base else ""
    return "stored" if suffix in ALREADY_COMPRESSED else "deflate"


def _zip_shard_writer(path: str, method: str, level: int):
    from ._zip import ZipWriter
    writer = ZipWriter(path, method="deflate", level=level)

    def add(item: Item, data: bytes, mtime: float) -> None:
        writer.write(item.name, data, method=zip_method(item.name, method), mtime=mtime)
    return writer, add


def _tfrecord_shard_writer(path: str, compression: str):
    from ._example import serialize_example
    from ._tfrecord import TFRecordWriter
    writer = TFRecordWriter(path, compression)

    def add(item: Item, data: bytes, mtime: float) -> None:
        features = {"path": item.name.encode("utf-8", "surrogateescape"), "data": data}
        if item.label is not None:
            features["label"] = item.label
        writer.write(serialize_example(features))
    return writer, add


def webdataset_names(items: Sequence[Item]) -> List[Item]:
    """Items renamed for a WebDataset tar: ``KEY.ext``, where KEY is the
    name without its extension and with every other '.' turned into '_'
    (webdataset's key runs to the first dot of the file name, so a dot in
    the key would split the sample), and ext the lower-cased extension
    (``bin`` when there is none).  Two items with one key are refused:
    webdataset would merge them into one sample."""
    renamed, seen = [], {}
    for item in items:
        folder, _, base = item.name.rpartition("/")
        stem, dot, ext = base.rpartition(".")
        if not dot or not stem:
            stem, ext = base, "bin"
        key = (folder + "/" if folder else "") + stem.replace(".", "_")
        if key in seen:
            raise ValueError(f"'{seen[key]}' and '{item.name}' would share the WebDataset "
                             f"key '{key}'; rename one")
        seen[key] = item.name
        renamed.append(item._replace(name=f"{key}.{ext.lower()}"))
    return renamed


class _TarShardWriter:
    """A WebDataset shard: each item as ``KEY.ext`` plus ``KEY.cls`` (its
    label) when labelled, written by tarfile (as webdataset's TarWriter
    does) into a file that appears at ``path`` only once complete."""

    def __init__(self, path: str):
        import tarfile
        from ._atomic import AtomicFile
        self._target = AtomicFile(path, "wb")
        self._tar = tarfile.open(fileobj=self._target.file, mode="w",
                                 format=tarfile.PAX_FORMAT)

    def add(self, item: Item, data: bytes, mtime: float) -> None:
        import io
        import tarfile
        members = [(item.name, data)]
        if item.label is not None:
            members.append((item.name.rsplit(".", 1)[0] + ".cls", str(item.label).encode()))
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(payload), mtime, 0o444
            self._tar.addfile(info, io.BytesIO(payload))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            self._tar.close()
        except BaseException:
            self._target.discard()
            raise
        if exc_type is None:
            self._target.commit()
        else:
            self._target.discard()


def split(items: Sequence[Item], shards: int) -> List[List[Item]]:
    """Contiguous runs, one per shard, whose sizes differ by at most one;
    never more runs than items, so no shard is empty."""
    count = min(shards, len(items))
    bounds = [len(items) * i // count for i in range(count + 1)]
    return [list(items[bounds[i]:bounds[i + 1]]) for i in range(count)]


def pack(items: Sequence[Item], out: str, *, format: str = "zip", shards: int = 1,
         shuffle: bool = False, seed: int = 0, method: str = "auto", level: int = 0,
         compression: str = "NONE", workers: int = 0, progress: bool = True,
         classes: Optional[Sequence[str]] = None, seekable_jpeg: bool = False) -> List[str]:
    """Writes ``items`` into ``shards`` files of ``format`` ("zip",
    "tfrecord" or "tar") plus the manifest; returns the shard paths.  Fewer than
    ``shards`` files are written when there are fewer items than that (a
    shard holds at least one item); the names then count the real number.
    ``method`` is "auto" (stored for compressed suffixes, else deflate),
    "stored", "deflate" or "lz4".  ``seekable_jpeg`` rewrites .jpg/.jpeg
    files losslessly with restart markers (:func:`dareblopy.jpeg_make_seekable`)
    so random crops decode only what they cover; a file it refuses (damaged
    data) is packed unchanged and listed in the manifest."""
    if shards < 1:
        raise ValueError(f"--shards must be at least 1 (got {shards})")
    if format not in ("zip", "tfrecord", "tar"):
        raise ValueError(f"unknown format {format!r}: use zip, tfrecord or tar")
    if method not in ("auto", "stored", "deflate", "lz4"):
        raise ValueError(f"unknown method {method!r}: use auto, stored, deflate or lz4")
    items = webdataset_names(items) if format == "tar" else list(items)
    if not items:
        raise ValueError("nothing to pack: the source holds no files")
    earlier = earlier_outputs(items, out)
    if earlier:
        raise ValueError(f"the source holds {', '.join(repr(i.source) for i in earlier[:3])}"
                         f"{' ...' if len(earlier) > 3 else ''}: output of an earlier pack to "
                         f"{out!r}, which would be packed as samples; write the shards outside "
                         f"the source folder (or move them out)")
    if shuffle:
        items = [items[i] for i in permutation(len(items), seed)]
    groups = split(items, shards)
    paths = shard_paths(out, len(groups))
    folder = os.path.dirname(os.path.abspath(paths[0]))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder '{folder}' does not exist; create it first")
    # A manifest from an earlier pack to the same name would describe
    # shards this pack replaces: it goes first, so a pack that fails part-way
    # leaves no manifest at all (the new one is written last).
    try:
        os.unlink(manifest_path(out))
    except FileNotFoundError:
        pass
    bar = _progress(len(items), f"packing {len(items)} files into {len(groups)} {format} "
                                f"shard(s)") if progress else None

    kept: List[Tuple[str, str, str]] = []  # (shard, name, why) not made seekable

    def write_shard(path: str, group: List[Item]) -> None:
        if format == "zip":
            writer, add = _zip_shard_writer(path, method, level)
        elif format == "tar":
            writer = _TarShardWriter(path)
            add = writer.add
        else:
            writer, add = _tfrecord_shard_writer(path, compression)
        with writer:
            for item in group:
                with open(item.source, "rb") as fh:
                    data, mtime = fh.read(), os.fstat(fh.fileno()).st_mtime
                if seekable_jpeg and item.name.lower().endswith(SEEKABLE_SUFFIXES):
                    data = _seekable(data, os.path.basename(path), item, kept)
                add(item, data, mtime)
                if bar is not None:
                    bar.update(1)

    threads = workers or min(len(groups), os.cpu_count() or 1)
    with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
        for done in [pool.submit(write_shard, p, g) for p, g in zip(paths, groups)]:
            done.result()  # re-raises the first failure
    if bar is not None:
        bar.close()
    write_manifest(out, paths, groups, classes,
                   seekable=sorted(kept) if seekable_jpeg else None)
    return paths


SEEKABLE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def _seekable(data: bytes, shard: str, item: Item, kept: list) -> bytes:
    """The seekable rewrite of one JPEG, or data itself (noted in kept)
    when the rewrite refuses it."""
    from ._errors import DbrError
    from ._jpeg import jpeg_make_seekable
    try:
        return jpeg_make_seekable(data)
    except DbrError as err:
        kept.append((shard, item.name, " ".join(str(err).split())))
        return data


def manifest_path(out: str) -> str:
    return out.replace("{shard", "shard").split("{")[0] + ".manifest.tsv"


def write_manifest(out: str, paths: Sequence[str], groups: Sequence[Sequence[Item]],
                   classes: Optional[Sequence[str]],
                   seekable: Optional[Sequence[Tuple[str, str, str]]] = None) -> str:
    """``shard<TAB>name<TAB>label<TAB>source`` per item, after a
    ``# sha256`` line per shard, atomically.  With --seekable-jpeg, a
    ``# seekable-jpeg`` line and one ``# kept-original`` line (shard, name,
    reason) per JPEG packed unchanged."""
    target = manifest_path(out)
    # surrogateescape: file names that are not UTF-8 keep their bytes, as
    # the shard readers' names do
    with atomic_write(target, "w", encoding="utf-8", errors="surrogateescape") as fh:
        if classes:
            fh.write("# classes\t" + "\t".join(classes) + "\n")
        if seekable is not None:
            fh.write("# seekable-jpeg\tlossless restart-marker rewrite of "
                     + " ".join(SEEKABLE_SUFFIXES) + " files\n")
            for shard, name, why in seekable:
                fh.write(f"# kept-original\t{shard}\t{name}\t{why}\n")
        fh.writelines(manifest_hash_lines(paths))  # checked by remote caches (_source.py)
        fh.write("# shard\tname\tlabel\tsource\n")
        for path, group in zip(paths, groups):
            for item in group:
                label = "" if item.label is None else str(item.label)
                fh.write(f"{os.path.basename(path)}\t{item.name}\t{label}\t{item.source}\n")
    return target


def read_manifest_labels(path: str) -> Dict[str, int]:
    """Labels from a manifest, keyed as :class:`dareblopy.ZipShard` names
    samples (``<shard file name>/<entry>``)."""
    labels = {}
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
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
