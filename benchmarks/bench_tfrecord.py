"""TFRecords read and parsed into numpy, CRC verified: dareblopy against
TensorFlow and DareBlopy 0.0.5.

4 files of 300 records, each an Example {'shape': int64[3], 'data': one
bytes value of a [3, 256, 256] uint8 image} (~236 MB, page cache warm), the
FFHQ layout DareBlopy was written for.  One epoch = every record parsed into
[batch, 3, 256, 256] uint8 arrays.  readinto of the same files into one
preallocated buffer is the physical limit (a single copy out of the page
cache, into memory that stays mapped).

The iterator hands out fresh arrays (the default); the "reused arrays" row
(reuse_arrays=True) reuses the arrays of dropped batches, as readinto reuses
its buffer, and the "1 thread" row shows what the second thread adds."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (DATA_DIR, interleaved_medians, print_table, readinto_limit,  # noqa: E402
                     run_legacy, save_results)

import numpy as np  # noqa: E402

import dareblopy as db  # noqa: E402

FILES, RECORDS, SHAPE, BATCH = 4, 300, (3, 256, 256), 32


def make_files() -> list:
    folder = os.path.join(DATA_DIR, "tfrecord_4x300")
    names = [os.path.join(folder, f"ffhq-r08-{k}.tfrecords") for k in range(FILES)]
    if all(os.path.exists(n) for n in names):
        return names
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(8)
    for n in names:
        with db.TFRecordWriter(n) as w:
            for _ in range(RECORDS):
                img = rng.integers(0, 256, SHAPE, dtype=np.uint8)
                w.write(db.serialize_example({"shape": np.array(SHAPE, np.int64), "data": img}))
    return names


def main():
    names = make_files()
    total = sum(os.path.getsize(n) for n in names)
    features = {"shape": db.FixedLenFeature([3], db.int64),
                "data": db.FixedLenFeature(list(SHAPE), db.uint8)}
    for n in names:  # indexes are built once and cached beside the files
        db.load_index(n)

    def dareblopy_iterator(threads=0, reuse=False):
        parser = db.RecordParser(features, threads=threads)
        for shape, data in db.ParsedTFRecordsDatasetIterator(names, parser, BATCH, seed=0,
                                                            reuse_arrays=reuse):
            pass

    parser = db.RecordParser(features)

    def dareblopy_stream():
        # Sequential RecordReader (bytes per record) + one parse_example per batch.
        batch = []
        for n in names:
            for rec in db.RecordReader(n):
                batch.append(rec)
                if len(batch) == BATCH:
                    parser.parse_example(batch)
                    batch = []
        if batch:
            parser.parse_example(batch)

    contenders = {
        "readinto(prealloc) [limit]": readinto_limit(names),
        "dareblopy ParsedTFRecordsDatasetIterator": dareblopy_iterator,
        "  same, 1 thread": lambda: dareblopy_iterator(threads=1),
        "  same, reused arrays (reuse_arrays=True)": lambda: dareblopy_iterator(reuse=True),
        "dareblopy RecordReader + parse_example": dareblopy_stream,
    }
    tf_note = ""
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        spec = {"shape": tf.io.FixedLenFeature([3], tf.int64),
                "data": tf.io.FixedLenFeature([], tf.string)}
        ds = tf.data.TFRecordDataset(names).batch(BATCH).map(
            lambda r: tf.reshape(tf.io.decode_raw(tf.io.parse_example(r, spec)["data"], tf.uint8),
                                 (-1,) + SHAPE)).prefetch(2)

        def tensorflow():
            for x in ds:
                x.numpy()

        contenders["TensorFlow TFRecordDataset+parse_example"] = tensorflow
    except ImportError:
        tf_note = "not installed: pip install tensorflow-cpu"

    t = interleaved_medians(contenders, repeats=7, warmup=1)
    legacy = run_legacy(f"""
import dareblopy as db
names = {names!r}
features = {{'shape': db.FixedLenFeature([3], db.int64),
             'data': db.FixedLenFeature({list(SHAPE)!r}, db.uint8)}}
def run():
    for shape, data in db.ParsedTFRecordsDatasetIterator(names, features, {BATCH}, 1000, seed=0):
        pass
print(json.dumps({{"seconds": median_time(run, repeats=7, warmup=1)}}))
""")
    rows = [{"name": k, "seconds": v} for k, v in t.items()]
    if "TensorFlow TFRecordDataset+parse_example" not in t:
        rows.append({"name": "TensorFlow TFRecordDataset+parse_example", "seconds": None,
                     "note": tf_note})
    rows.append({"name": "DareBlopy 0.0.5 ParsedTFRecordsDatasetIterator",
                 "seconds": legacy["seconds"] if legacy else None,
                 "note": "" if legacy else "not installed: make peers"})
    for r in rows:
        if r["seconds"]:
            r["note"] = f"{total / r['seconds'] / 1e9:.2f} GB/s " + r.get("note", "")
    baseline = "DareBlopy 0.0.5 ParsedTFRecordsDatasetIterator" if legacy else \
        "readinto(prealloc) [limit]"
    print_table(f"{FILES} files x {RECORDS} records of {SHAPE} uint8 ({total / 1e6:.0f} MB), "
                f"read + CRC + parse into numpy, batch {BATCH}", rows, baseline=baseline)
    ours = t["dareblopy ParsedTFRecordsDatasetIterator"]
    print(f"\ndareblopy: {total / ours / 1e9:.2f} GB/s = "
          f"{t['readinto(prealloc) [limit]'] / ours * 100:.0f}% of readinto bandwidth "
          f"({total / t['readinto(prealloc) [limit]'] / 1e9:.2f} GB/s); "
          f"hardware CRC-32C: {bool(db._lib.dbr_crc32c_hardware())}")
    save_results("tfrecord", {"bytes": total, "seconds": t,
                              "legacy_seconds": legacy["seconds"] if legacy else None})


if __name__ == "__main__":
    main()
