"""tf.train.Example parsing, differential against TensorFlow's parser on
records written by TensorFlow, plus the builder and the error cases."""
import os

import numpy as np
import pytest

import dareblopy as db

N = 6


@pytest.fixture(scope="module")
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return pytest.importorskip("tensorflow", reason="TensorFlow (the reference) is not installed")


def tf_feature(tf, kind, values):
    t = tf.train
    if kind == "bytes":
        return t.Feature(bytes_list=t.BytesList(value=values))
    if kind == "float":
        return t.Feature(float_list=t.FloatList(value=values))
    return t.Feature(int64_list=t.Int64List(value=values))


@pytest.fixture(scope="module")
def records(tf):
    """N Examples written by TensorFlow, with every feature kind."""
    rng = np.random.default_rng(7)
    out = []
    for i in range(N):
        feats = {
            "i_scalar": tf_feature(tf, "int", [int(rng.integers(-2**62, 2**62))]),
            "i_vec": tf_feature(tf, "int", [-1, 0, 2**63 - 1, -2**63, i]),
            "f_mat": tf_feature(tf, "float", rng.standard_normal(6).astype(np.float32).tolist()),
            "s_scalar": tf_feature(tf, "bytes", [b"name-%d" % i]),
            "s_vec": tf_feature(tf, "bytes", [b"", b"x" * i, bytes([0, 255])]),
            "img": tf_feature(tf, "bytes", [rng.integers(0, 256, 3 * 4 * 5, dtype=np.uint8).tobytes()]),
            "v_int": tf_feature(tf, "int", list(range(i))),
            "v_float": tf_feature(tf, "float", [0.5] * (i % 3)),
            "v_bytes": tf_feature(tf, "bytes", [b"v%d" % k for k in range(i % 4)]),
            "seq": tf_feature(tf, "float", [float(k) for k in range(2 * (i % 3))]),
        }
        if i % 2:  # present in odd records only: defaults elsewhere
            feats["opt_i"] = tf_feature(tf, "int", [i, i])
            feats["opt_s"] = tf_feature(tf, "bytes", [b"here"])
        ex = tf.train.Example(features=tf.train.Features(feature=feats))
        out.append(ex.SerializeToString())
    return out


def specs(tf):
    """The same spec for TensorFlow and for dareblopy."""
    return [
        ("i_scalar", tf.io.FixedLenFeature([], tf.int64), db.FixedLenFeature([], db.int64)),
        ("i_vec", tf.io.FixedLenFeature([5], tf.int64), db.FixedLenFeature([5], db.int64)),
        ("f_mat", tf.io.FixedLenFeature([2, 3], tf.float32), db.FixedLenFeature([2, 3], db.float32)),
        ("s_scalar", tf.io.FixedLenFeature([], tf.string), db.FixedLenFeature([], db.string)),
        ("s_vec", tf.io.FixedLenFeature([3], tf.string), db.FixedLenFeature([3], db.string)),
        ("opt_i", tf.io.FixedLenFeature([2], tf.int64, default_value=[-7, 8]),
         db.FixedLenFeature([2], db.int64, default_value=[-7, 8])),
        ("opt_s", tf.io.FixedLenFeature([], tf.string, default_value=b"dflt"),
         db.FixedLenFeature([], db.string, default_value=b"dflt")),
        ("seq", tf.io.FixedLenSequenceFeature([2], tf.float32, allow_missing=True),
         db.FixedLenSequenceFeature([2], db.float32, allow_missing=True)),
    ]


VAR = [("v_int", "int64"), ("v_float", "float32"), ("v_bytes", "string")]


def _tf_dtype(tf, name):
    return {"int64": tf.int64, "float32": tf.float32, "string": tf.string}[name]


def assert_same(ours, theirs):
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape
    if theirs.dtype.kind in "OS":
        assert ours.tolist() == theirs.tolist()
    else:
        assert ours.dtype == theirs.dtype
        assert ours.tobytes() == theirs.tobytes()  # bit-exact, NaN or not


def test_parse_example_matches_tensorflow(tf, records):
    sp = specs(tf)
    tf_spec = {name: t for name, t, _ in sp}
    tf_spec.update({name: tf.io.VarLenFeature(_tf_dtype(tf, d)) for name, d in VAR})
    ours_spec = {name: o for name, _, o in sp}
    ours_spec.update({name: db.VarLenFeature(d) for name, d in VAR})
    theirs = tf.io.parse_example(records, tf_spec)
    parser = db.RecordParser(ours_spec)
    batch = dict(zip(parser.names, parser.parse_example(records)))
    for name, _, _ in sp:
        assert_same(batch[name], theirs[name].numpy())
    for name, _ in VAR:
        sparse = theirs[name]
        ragged = batch[name]
        assert_same(ragged.values, sparse.values.numpy())
        rows = np.bincount(sparse.indices.numpy()[:, 0], minlength=N) if len(sparse.indices) \
            else np.zeros(N, np.int64)
        assert ragged.row_lengths.tolist() == rows.tolist()


def assert_same_single(ours, theirs):
    """parse_single_example against TensorFlow's, except that a scalar
    string comes as [b"..."] (DareBlopy 0.0.5's convention, kept)."""
    ours = np.asarray(ours)
    if ours.dtype == object and np.ndim(theirs) == 0:
        assert ours.shape == (1,)
        ours = ours.reshape(())
    assert_same(ours, theirs)


def test_parse_single_example_matches_tensorflow(tf, records):
    sp = specs(tf)
    parser = db.RecordParser({name: o for name, _, o in sp})
    for rec in records:
        theirs = tf.io.parse_single_example(rec, {name: t for name, t, _ in sp})
        for name, ours in zip(parser.names, parser.parse_single_example(rec)):
            assert_same_single(ours, theirs[name].numpy())


def test_uint8_feature_is_decode_raw(tf, records):
    parser = db.RecordParser({"img": db.FixedLenFeature([3, 4, 5], db.uint8)})
    (ours,) = parser.parse_example(records)
    raw = tf.io.parse_example(records, {"img": tf.io.FixedLenFeature([], tf.string)})["img"]
    theirs = tf.reshape(tf.io.decode_raw(raw, tf.uint8), [-1, 3, 4, 5]).numpy()
    assert_same(ours, theirs)
    single = parser.parse_single_example(records[2])[0]
    assert_same(single, theirs[2])
    arrays = [np.zeros((N, 3, 4, 5), np.uint8)]
    parser.parse_single_example_inplace(records[4], arrays, 1)
    assert_same(arrays[0][1], theirs[4])
    assert not arrays[0][0].any()


def _varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    return bytes(out + bytes([v]))


def _ld(field, payload):
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


UNKNOWN = _varint(15 << 3 | 0) + _varint(99) + _varint(16 << 3 | 5) + b"abcd" + \
    _varint(17 << 3 | 1) + b"12345678" + _ld(18, b"junk")


def _crafted(where):
    """An Example with i = [5, -3] and f = [1.5, -2.0, 3.25] unpacked, and unknown fields of every wire type at `where`."""
    import struct
    u = lambda w: UNKNOWN if w == where else b""  # noqa: E731
    ints = b"".join(_varint(1 << 3 | 0) + _varint(v) for v in (5, -3)) + u("list")
    floats = b"".join(_varint(1 << 3 | 5) + struct.pack("<f", v) for v in (1.5, -2.0, 3.25))
    entries = _ld(1, _ld(1, b"i") + _ld(2, _ld(3, ints) + u("feature"))) + \
        _ld(1, _ld(1, b"f") + _ld(2, _ld(2, floats))) + u("features")
    return _ld(1, entries) + u("example")


@pytest.mark.parametrize("where", ["none", "example", "feature", "features", "list"])
def test_unpacked_and_unknown_fields(tf, where):
    rec = _crafted(where)
    i, f = db.RecordParser({"i": db.FixedLenFeature([2], db.int64),
                            "f": db.FixedLenFeature([3], db.float32)}).parse_single_example(rec)
    # protobuf's own parser (tf.train.Example) is the reference for skipping.
    ex = tf.train.Example.FromString(rec).features.feature
    assert i.tolist() == list(ex["i"].int64_list.value) == [5, -3]
    assert f.tolist() == list(ex["f"].float_list.value) == [1.5, -2.0, 3.25]
    if where in ("none", "example", "feature"):
        # TensorFlow's fast parser agrees; it rejects unknown fields inside
        # Features maps and value lists, which protobuf (and we) skip.
        theirs = tf.io.parse_single_example(rec, {"i": tf.io.FixedLenFeature([2], tf.int64),
                                                  "f": tf.io.FixedLenFeature([3], tf.float32)})
        assert_same(i, theirs["i"].numpy())
        assert_same(f, theirs["f"].numpy())


def test_sequence_example_matches_tensorflow(tf):
    recs = []
    for i in range(3):
        ctx = tf.train.Features(feature={"len": tf_feature(tf, "int", [i + 1]),
                                         "name": tf_feature(tf, "bytes", [b"s%d" % i])})
        lists = tf.train.FeatureLists(feature_list={
            "tok": tf.train.FeatureList(feature=[tf_feature(tf, "int", [k, -k]) for k in range(i + 1)]),
            "emb": tf.train.FeatureList(feature=[tf_feature(tf, "float", [k * 0.25]) for k in range(i + 1)]),
        })
        recs.append(tf.train.SequenceExample(context=ctx, feature_lists=lists).SerializeToString())
    parser = db.RecordParser({"len": db.FixedLenFeature([], db.int64),
                              "name": db.FixedLenFeature([], db.string)},
                             sequence_features={"tok": db.FixedLenSequenceFeature([2], db.int64),
                                                "emb": db.FixedLenSequenceFeature([], db.float32)})
    for rec in recs:
        ctx, seq = tf.io.parse_single_sequence_example(
            rec, context_features={"len": tf.io.FixedLenFeature([], tf.int64),
                                   "name": tf.io.FixedLenFeature([], tf.string)},
            sequence_features={"tok": tf.io.FixedLenSequenceFeature([2], tf.int64),
                               "emb": tf.io.FixedLenSequenceFeature([], tf.float32)})
        ours = dict(zip(parser.names, parser.parse_single_example(rec)))
        for name, value in list(ctx.items()) + list(seq.items()):
            assert_same_single(ours[name], value.numpy())
    batch = dict(zip(parser.names, parser.parse_example(recs)))
    assert batch["tok"].shape == (3, 3, 2)
    assert batch["tok"][0, 1:].tolist() == [[0, 0], [0, 0]]  # padded


def test_builder_read_by_tensorflow(tf):
    img = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    rec = db.serialize_example({"img": img, "label": 3, "neg": [-5, 2**40],
                                "w": np.array([0.5, -1.25], np.float32), "name": "héllo",
                                "tags": [b"a", b"bc"], "empty": []})
    ex = tf.train.Example.FromString(rec)
    f = ex.features.feature
    assert f["img"].bytes_list.value == [img.tobytes()]
    assert list(f["label"].int64_list.value) == [3]
    assert list(f["neg"].int64_list.value) == [-5, 2**40]
    assert list(f["w"].float_list.value) == [0.5, -1.25]
    assert list(f["name"].bytes_list.value) == ["héllo".encode()]
    assert list(f["tags"].bytes_list.value) == [b"a", b"bc"]
    seq = db.serialize_sequence_example({"id": 1}, {"x": [[1, 2], [3, 4]]})
    se = tf.train.SequenceExample.FromString(seq)
    assert [list(s.int64_list.value) for s in se.feature_lists.feature_list["x"].feature] == \
        [[1, 2], [3, 4]]
    assert db.Example({"label": 3}).SerializeToString() == db.serialize_example({"label": 3})


# ---- errors, without TensorFlow


def _rec(**features):
    return db.serialize_example(features)


def test_errors_name_feature_and_record():
    good = _rec(a=[1, 2], s=b"x")
    parser = db.RecordParser({"a": db.FixedLenFeature([2], db.int64)})
    with pytest.raises(db.InvalidArgumentError, match=r"record 1 .*'a'.*required"):
        parser.parse_example([good, _rec(b=1)])
    with pytest.raises(db.InvalidArgumentError, match=r"record 0 .*'a'.*float_list.*int64"):
        parser.parse_example([_rec(a=[1.5, 2.5])])
    with pytest.raises(db.InvalidArgumentError, match=r"'a'.*more than the 2 int64 values"):
        parser.parse_single_example(_rec(a=[1, 2, 3]))
    with pytest.raises(db.InvalidArgumentError, match=r"'img'"):
        db.RecordParser({"img": db.FixedLenFeature([5], db.uint8)}).parse_single_example(
            _rec(img=b"1234"))
    with pytest.raises(db.InvalidArgumentError):
        db.RecordParser({"a": db.FixedLenFeature([2], db.int64, default_value=[1, 2, 3])})


def test_malformed_records_raise_cleanly():
    parser = db.RecordParser({"a": db.FixedLenFeature([2], db.int64, default_value=[0, 0]),
                              "s": db.VarLenFeature(db.string)})
    good = _rec(a=[1, 2], s=[b"x", b"yz"])
    rng = np.random.default_rng(3)
    for cut in range(1, len(good)):
        try:
            parser.parse_single_example(good[:cut])
        except (db.CorruptDataError, db.InvalidArgumentError):
            pass
    for _ in range(300):
        bad = bytearray(good)
        for _ in range(3):
            bad[rng.integers(len(bad))] = rng.integers(256)
        try:
            parser.parse_single_example(bytes(bad))
        except (db.CorruptDataError, db.InvalidArgumentError):
            pass
    with pytest.raises(db.CorruptDataError):
        parser.parse_single_example(b"\xff\xff\xff")


def test_parallel_batch_equals_serial():
    recs = [_rec(img=np.full((8, 8), i, np.uint8), y=i, w=[i * 0.5, 1.0]) for i in range(64)]
    spec = {"img": db.FixedLenFeature([8, 8], db.uint8), "y": db.FixedLenFeature([], db.int64),
            "w": db.FixedLenFeature([2], db.float32)}
    par = db.RecordParser(spec, run_parallel=True).parse_example(recs)
    ser = db.RecordParser(spec, run_parallel=False).parse_example(recs)
    for a, b in zip(par, ser):
        assert a.tobytes() == b.tobytes()
    assert par[1].tolist() == list(range(64))
    assert (par[0][:, 3, 3] == np.arange(64)).all()


# ---- edges (issue 10 item 4)


@pytest.mark.parametrize("value", [2**63, 2**64 + 5, -2**63 - 1, [1, 2**70],
                                   np.array([2**63], np.uint64)])
def test_out_of_range_int_raises_like_tensorflow(tf, value):
    with pytest.raises(ValueError, match="out of range"):
        tf.train.Int64List(value=value if isinstance(value, (list, np.ndarray)) else [value])
    with pytest.raises(ValueError, match="out of range"):
        db.serialize_example({"x": value})


def test_int64_extremes_round_trip(tf):
    values = [2**63 - 1, -2**63, 0, -1]
    rec = db.serialize_example({"x": values, "u": np.array([2**63 - 1], np.uint64)})
    ex = tf.train.Example.FromString(rec)
    assert list(ex.features.feature["x"].int64_list.value) == values
    parsed = db.RecordParser({"x": db.FixedLenFeature([4], db.int64)}).parse_single_example(rec)
    assert parsed[0].tolist() == values


@pytest.mark.parametrize("name", ["a\0b", "\0", "label\0"])
def test_feature_name_with_nul_is_refused(name):
    rec = db.serialize_example({"a": 1, "label": 2})
    with pytest.raises(ValueError, match="NUL"):
        db.RecordParser({name: db.FixedLenFeature([], db.int64)})
    # the prefix before the NUL is an existing feature that must not be matched silently
    assert db.RecordParser({"a": db.FixedLenFeature([], db.int64)}).parse_single_example(rec)[0] == 1
