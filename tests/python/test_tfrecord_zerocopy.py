"""Batched reads of indexed TFRecords (ParsedTFRecordsDatasetIterator,
dbr_tfrecord_parse_at) read large uint8 values from the file straight into
the output arrays.  These records are big enough to take that path; the
Examples are encoded here by hand from the protobuf wire format, so layouts
that writers differ on (feature order, duplicate keys, long values before
the image) are all covered, and the expected arrays come from the same
numbers the records were built from."""
import os

import numpy as np
import pytest

import dareblopy as db

SHAPE = (3, 100, 100)  # 30000 bytes: large enough to be read in place
SIZE = int(np.prod(SHAPE))


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def entry(key, feature):
    return ld(1, ld(1, key.encode()) + ld(2, feature))  # one Features map entry


def bytes_feature(*values):
    return ld(1, b"".join(ld(1, v) for v in values))


def int64_feature(*values):
    return ld(3, ld(1, b"".join(varint(v) for v in values)))


def image(i, size=SIZE):
    return np.random.default_rng(i).integers(0, 256, size, dtype=np.uint8).tobytes()


def layouts(i):
    """Serialized Examples with image(i) as 'img' and i as 'id'."""
    img, ident = entry("img", bytes_feature(image(i))), entry("id", int64_feature(i))
    return {
        "img_last": ld(1, ident + img),
        "img_first": ld(1, img + ident),  # bytes after the image
        "long_before": ld(1, entry("note", bytes_feature(b"x" * 3000)) + ident + img),
        "long_key": ld(1, entry("k" * 900, int64_feature(7)) + ident + img),
        # Protobuf's rule: the last entry of a key wins, here the real image.
        "dup_key": ld(1, ident + entry("img", bytes_feature(image(i + 999))) + img),
        "two_features_fields": ld(1, ident) + ld(1, img),
        "unknown_fields": varint(5 << 3) + varint(3) + ld(1, ident + img) + ld(9, b"zz"),
    }


FEATURES = {"id": db.FixedLenFeature([], db.int64), "img": db.FixedLenFeature(SHAPE, db.uint8)}


def write(path, records):
    with db.TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    return str(path)


def check_batches(batches, expect_ids):
    seen = []
    for ids, imgs in batches:
        assert imgs.shape == (len(ids),) + SHAPE
        for k, i in enumerate(ids.tolist()):
            assert imgs[k].tobytes() == image(i), f"record {i}"
        seen += ids.tolist()
    assert sorted(seen) == sorted(expect_ids)


@pytest.mark.parametrize("layout", sorted(layouts(0)))
@pytest.mark.parametrize("threads", [1, 2])
def test_layouts(tmp_path, layout, threads):
    names = [write(tmp_path / f"{layout}{f}.tfrecord", [layouts(f * 10 + i)[layout] for i in range(5)])
             for f in range(2)]
    parser = db.RecordParser(FEATURES, threads=threads)
    check_batches(db.ParsedTFRecordsDatasetIterator(names, parser, 3, seed=1),
                  [f * 10 + i for f in range(2) for i in range(5)])
    # The same records through the generic path (bytes in memory, no index).
    for n in names:
        ids, imgs = parser.parse_example(list(db.RecordReader(n)))
        assert all(imgs[k].tobytes() == image(i) for k, i in enumerate(ids.tolist()))


def test_matches_tensorflow_written_records(tmp_path):
    tf = pytest.importorskip("tensorflow", reason="TensorFlow (the reference) is not installed")
    path = str(tmp_path / "tf.tfrecord")
    with tf.io.TFRecordWriter(path) as w:
        for i in range(6):
            ex = tf.train.Example(features=tf.train.Features(feature={
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i])),
                "img": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image(i)]))}))
            w.write(ex.SerializeToString())
    check_batches(db.ParsedTFRecordsDatasetIterator([path], FEATURES, 4, seed=3), list(range(6)))


def corrupt(path, pos):
    with open(path, "r+b") as fh:
        fh.seek(pos)
        b = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([b[0] ^ 0x10]))


def record_offsets(path):
    return [int(o) for o in db.load_index(path)[:, 0]]


@pytest.mark.parametrize("where", ["image", "after_image", "before_image"])
def test_crc_catches_damage_anywhere(tmp_path, where):
    path = write(tmp_path / "c.tfrecord", [layouts(i)["img_first"] for i in range(4)])
    offsets = record_offsets(path)
    db.load_index(path)  # cached before the damage: the frames keep their lengths
    start = offsets[2] + 12
    pos = {"image": start + 10 + SIZE // 2, "after_image": offsets[3] - 6,
           "before_image": start + 2}[where]
    corrupt(path, pos)
    with pytest.raises(db.CorruptDataError) as info:
        for _ in db.ParsedTFRecordsDatasetIterator([path], FEATURES, 4, seed=0):
            pass
    assert "c.tfrecord" in str(info.value) and f"offset {offsets[2]}" in str(info.value)


def test_without_crc_the_damaged_bytes_arrive(tmp_path):
    path = write(tmp_path / "n.tfrecord", [layouts(i)["img_last"] for i in range(3)])
    offsets = record_offsets(path)
    index = db.load_index(path)
    corrupt(path, offsets[2] - 100)  # inside record 1's image
    f = db.File.open(path)
    parser = db.RecordParser(FEATURES)
    ids, imgs = parser._parse_at([f._h()] * 3, index[:, 0].copy(), index[:, 1].copy(),
                                 verify=False)
    assert imgs[0].tobytes() == image(0) and imgs[2].tobytes() == image(2)
    damaged = bytearray(image(1))
    damaged[-100 + 4] ^= 0x10  # the footer (4 bytes) follows the image
    assert imgs[1].tobytes() == bytes(damaged)
    with pytest.raises(db.CorruptDataError):
        parser._parse_at([f._h()] * 3, index[:, 0].copy(), index[:, 1].copy())


def test_truncated_file_with_stale_index(tmp_path):
    path = write(tmp_path / "t.tfrecord", [layouts(i)["img_last"] for i in range(3)])
    db.load_index(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:
        fh.truncate(size - 5000)
    index = db.read_index(path + ".idx")
    f = db.File.open(path)
    with pytest.raises(db.CorruptDataError, match="t.tfrecord"):
        db.RecordParser(FEATURES)._parse_at([f._h()] * 3, index[:, 0].copy(), index[:, 1].copy())


def test_wrong_image_size_is_a_clean_error(tmp_path):
    recs = [ld(1, entry("id", int64_feature(0)) + entry("img", bytes_feature(image(0, SIZE + 1))))]
    path = write(tmp_path / "w.tfrecord", recs)
    with pytest.raises(db.DbrError, match="img"):
        list(db.ParsedTFRecordsDatasetIterator([path], FEATURES, 1, seed=0))


def test_held_batches_are_never_overwritten(tmp_path):
    names = [write(tmp_path / "h.tfrecord", [layouts(i)["img_last"] for i in range(9)])]
    held = list(db.ParsedTFRecordsDatasetIterator(names, FEATURES, 2, seed=4))
    check_batches(held, list(range(9)))
    assert len({id(b[1]) for b in held}) == len(held)
    views = [b[1][0] for b in db.ParsedTFRecordsDatasetIterator(names, FEATURES, 2, seed=4)]
    assert [v.tobytes() for v in views] == [b[1][0].tobytes() for b in held]


def test_dropped_arrays_are_reused(tmp_path):
    names = [write(tmp_path / "r.tfrecord", [layouts(i)["img_last"] for i in range(9)])]
    addresses = set()
    for ids, imgs in db.ParsedTFRecordsDatasetIterator(names, FEATURES, 2, seed=4):
        addresses.add(imgs.ctypes.data)
    assert len(addresses) < 5
    fresh = set()
    for ids, imgs in db.ParsedTFRecordsDatasetIterator(names, FEATURES, 2, seed=4,
                                                       reuse_arrays=False):
        fresh.add(id(imgs))
        assert all(imgs[k].tobytes() == image(i) for k, i in enumerate(ids.tolist()))
