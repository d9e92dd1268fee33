"""tf.train.Example: feature specs, the parser (libdbr's wire-format parser,
one C call per batch) and the builder (serialisation).

The builder is Python: writing is rare next to reading, the protobuf
encoding is a few lines, and it keeps libdbr a reader."""
from __future__ import annotations

import struct
from collections import namedtuple
from typing import Dict, List, Sequence

import numpy as np

from ._batch import Outcomes, check_errors_mode
from ._errors import InvalidArgumentError, check, error_from_code
from ._enums import LegacyIntEnum
from ._ffi import ffi, lib


class DataType(LegacyIntEnum):
    """Feature value types, as in DareBlopy (``db.uint8`` is raw bytes that
    fill a uint8 array: DareBlopy's zero-copy image feature)."""

    string = lib.DBR_DTYPE_STRING
    float32 = lib.DBR_DTYPE_FLOAT32
    int64 = lib.DBR_DTYPE_INT64
    uint8 = lib.DBR_DTYPE_UINT8


_NUMPY = {DataType.string: np.dtype(object), DataType.float32: np.dtype(np.float32),
          DataType.int64: np.dtype(np.int64), DataType.uint8: np.dtype(np.uint8)}
_BY_NAME = {"string": DataType.string, "bytes": DataType.string, "str": DataType.string,
            "object": DataType.string, "float32": DataType.float32, "int64": DataType.int64,
            "uint8": DataType.uint8}


def _dtype(value) -> DataType:
    if isinstance(value, DataType):
        return value
    name = getattr(value, "name", None) or str(value)
    try:
        return _BY_NAME[np.dtype(value).name if name not in _BY_NAME else name]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"unsupported feature dtype {value!r}: use string, float32, int64 or uint8") from None


def _shape(shape) -> tuple:
    if shape is None:
        return ()
    if isinstance(shape, int):
        return (shape,)
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise InvalidArgumentError(f"feature shape {shape} must be fully defined")
    return shape


class FixedLenFeature:
    """A feature of a fixed shape.  ``default_value`` (broadcast to the
    shape) is used when a record lacks the feature; without it, a missing
    feature is an error."""

    kind = lib.DBR_FEATURE_FIXED

    def __init__(self, shape, dtype, default_value=None):
        self.shape = _shape(shape)
        self.dtype = _dtype(dtype)
        self.default_value = default_value

    def __repr__(self):
        return f"FixedLenFeature({list(self.shape)}, {self.dtype.name})"


class VarLenFeature:
    """Any number of values per record: parsed as the values plus, for a
    batch, the number of values of each record (``Ragged``)."""

    kind = lib.DBR_FEATURE_VAR
    shape = ()
    default_value = None

    def __init__(self, dtype):
        self.dtype = _dtype(dtype)

    def __repr__(self):
        return f"VarLenFeature({self.dtype.name})"


class FixedLenSequenceFeature:
    """Rows of a fixed shape, any number of them: ``[rows, *shape]``.  In an
    Example, the values of one feature (TensorFlow needs allow_missing=True
    there); in a SequenceExample's feature lists, one row per step.
    Batches are padded with ``default_value`` (0 or b"" without one)."""

    kind = lib.DBR_FEATURE_FIXED_SEQUENCE

    def __init__(self, shape, dtype, allow_missing=False, default_value=None):
        self.shape = _shape(shape)
        self.dtype = _dtype(dtype)
        self.allow_missing = allow_missing
        self.default_value = default_value

    def __repr__(self):
        return f"FixedLenSequenceFeature({list(self.shape)}, {self.dtype.name})"


Ragged = namedtuple("Ragged", ["values", "row_lengths"])
Ragged.__doc__ = "Values of a batch back to back, and how many belong to each record."


class _Feature:
    """One feature of a compiled spec: how its output is built."""

    __slots__ = ("name", "spec", "dtype", "np_dtype", "shape", "inner", "direct", "default",
                 "in_lists", "itemsize")

    def __init__(self, name, spec, in_lists):
        self.name = name
        self.spec = spec
        self.dtype = spec.dtype
        self.np_dtype = _NUMPY[spec.dtype]
        self.shape = spec.shape
        self.in_lists = in_lists
        inner = 1
        for s in self.shape:
            inner *= s
        self.inner = inner
        self.direct = spec.kind == lib.DBR_FEATURE_FIXED and spec.dtype != DataType.string
        self.itemsize = self.np_dtype.itemsize if self.direct else 0
        self.default = None
        if spec.default_value is not None:
            if spec.dtype == DataType.uint8 and isinstance(spec.default_value, (bytes, bytearray)):
                value = np.frombuffer(spec.default_value, np.uint8)
            else:
                value = np.asarray(spec.default_value, dtype=self.np_dtype)
            try:
                self.default = np.broadcast_to(value.reshape(-1) if value.size == inner else value,
                                               (inner,)).reshape(self.shape)
            except ValueError:
                raise InvalidArgumentError(
                    f"feature '{name}': default value of shape {value.shape} does not fit "
                    f"{self.shape}") from None


class RecordParser:
    """Parses serialized tf.train.Example records into numpy arrays, in the
    order of the ``features`` dict.  ``parse_example`` parses a whole batch
    in one C call (on several threads when every feature is a fixed
    float32/int64/uint8 and ``run_parallel``).

    ``sequence_features`` makes it a SequenceExample parser: ``features``
    then describes the context."""

    def __init__(self, features: Dict[str, object], run_parallel: bool = True,
                 threads: int = 0, sequence_features: Dict[str, object] = None):
        if not isinstance(features, dict):
            raise InvalidArgumentError("RecordParser: features must be a dict of name -> feature")
        self._sequence = sequence_features is not None
        self._features: List[_Feature] = []
        handle = ffi.new("dbr_example_parser **")
        check(lib.dbr_example_parser_create(int(self._sequence), handle))
        self._parser = ffi.gc(handle[0], lib.dbr_example_parser_free)
        for group, in_lists in ((features, 0), (sequence_features or {}, 1)):
            for name, spec in group.items():
                self._add(name, spec, in_lists)
        self._threads = (threads or 0) if run_parallel else 1
        self.names = [f.name for f in self._features]

    def _add(self, name, spec, in_lists):
        if not isinstance(name, str):
            raise InvalidArgumentError(f"feature name {name!r} is not a str")
        if "\0" in name:  # C would cut the name there and match another feature
            raise InvalidArgumentError(f"feature name {name!r} contains a NUL character")
        if not hasattr(spec, "kind"):
            raise InvalidArgumentError(f"feature '{name}': {spec!r} is not a feature spec")
        f = _Feature(name, spec, in_lists)
        default = ffi.NULL
        default_len = 0
        keep = None
        if f.default is not None:
            if f.direct:
                keep = np.ascontiguousarray(f.default, dtype=f.np_dtype)
                default, default_len = ffi.from_buffer(keep), keep.nbytes
            else:
                default = ffi.new("char[1]")
        check(lib.dbr_example_parser_add(
            self._parser, name.encode(), spec.kind, int(f.dtype), in_lists, f.inner, default,
            default_len, int(bool(getattr(spec, "allow_missing", False)))))
        del keep
        self._features.append(f)

    # ---- outputs

    def _outputs(self, n, arrays=None, index=0, alloc=np.empty):
        outs = ffi.new("dbr_feature_out[]", max(1, len(self._features)))
        results = []
        for k, f in enumerate(self._features):
            if f.direct:
                arr = alloc((n,) + f.shape, f.np_dtype) if arrays is None else arrays[k]
                if arrays is not None:
                    _check_inplace(f, arr, index)
                    buf = ffi.from_buffer(arr, require_writable=True) + index * f.inner * f.itemsize
                    outs[k].dst_cap = f.inner * f.itemsize
                else:
                    buf = ffi.from_buffer(arr, require_writable=True)
                    outs[k].dst_cap = arr.nbytes
                outs[k].dst = buf
                results.append((arr, buf))
            else:
                results.append(None)
        return outs, results

    def _collect(self, outs, n):
        values = []
        for k, f in enumerate(self._features):
            o = outs[k]
            if f.direct:
                values.append(None)
                continue
            counts = np.frombuffer(ffi.buffer(o.counts, n * 8), np.int64).copy() if n else \
                np.zeros(0, np.int64)
            if f.dtype == DataType.string:
                blob = ffi.buffer(o.values, o.values_len)[:] if o.values_len else b""
                lengths = ffi.unpack(o.value_lengths, o.value_count) if o.value_count else []
                flat = np.empty(len(lengths), object)
                pos = 0
                for i, ln in enumerate(lengths):
                    flat[i] = blob[pos:pos + ln]
                    pos += ln
            else:
                flat = np.frombuffer(ffi.buffer(o.values, o.values_len)[:], f.np_dtype) \
                    if o.values_len else np.zeros(0, f.np_dtype)
            values.append((flat, counts))
        lib.dbr_feature_out_clear(outs, len(self._features))
        return values

    def _shape_batch(self, f, flat, counts, n):
        spec = f.spec
        if spec.kind == lib.DBR_FEATURE_VAR:
            return Ragged(flat, counts)
        if spec.kind == lib.DBR_FEATURE_FIXED:  # strings
            out = np.empty((n,) + f.shape, object)
            rows = out.reshape(n, f.inner)
            pos = 0
            for i in range(n):
                if counts[i] < 0:
                    rows[i, :] = f.default.reshape(-1)
                elif counts[i] == 0:  # a failed record (errors="return") left nothing
                    rows[i, :] = b""
                else:
                    rows[i, :] = flat[pos:pos + f.inner]
                    pos += f.inner
            return out
        rows = counts // max(f.inner, 1) if f.inner else counts * 0
        longest = int(rows.max()) if n else 0
        pad = f.spec.default_value
        if pad is None:
            pad = b"" if f.dtype == DataType.string else 0
        out = np.empty((n, longest) + f.shape, f.np_dtype)
        out[...] = np.asarray(pad, dtype=f.np_dtype) if f.dtype != DataType.string else pad
        pos = 0
        for i in range(n):
            r = int(rows[i])
            out[i, :r] = flat[pos:pos + r * f.inner].reshape((r,) + f.shape)
            pos += r * f.inner
        return out

    def _finish(self, outs, results, n):
        collected = self._collect(outs, n)
        batch = []
        for f, res, col in zip(self._features, results, collected):
            batch.append(res[0] if f.direct else self._shape_batch(f, col[0], col[1], n))
        return batch

    # ---- parsing

    def _run(self, records: Sequence[bytes], outs):
        n = len(records)
        ptrs = ffi.new("void *[]", max(1, n))
        lens = ffi.new("size_t[]", max(1, n))
        keep = []
        for i, r in enumerate(records):
            if isinstance(r, str):  # DareBlopy 0.0.5 (pybind11) took str as UTF-8
                r = r.encode()
            buf = ffi.from_buffer(r)
            keep.append(buf)
            ptrs[i] = buf
            lens[i] = len(buf)
        rc = lib.dbr_example_parse(self._parser, ptrs, lens, n, outs, self._threads)
        if rc < 0:
            err = error_from_code(rc)
            lib.dbr_feature_out_clear(outs, len(self._features))
            raise err

    def parse_example(self, records: Sequence[bytes]) -> list:
        """A batch: one array ``[N, *shape]`` per feature (``Ragged`` for
        VarLenFeature; padded ``[N, rows, *shape]`` for sequences)."""
        n = len(records)
        outs, results = self._outputs(n)
        self._run(records, outs)
        return self._finish(outs, results, n)

    def parse_single_example(self, record: bytes) -> list:
        """One record: one array per feature (values only for VarLenFeature).
        A string feature is an object array of at least one dimension, as
        in DareBlopy 0.0.5: ``FixedLenFeature([], string)`` gives ``[b"..."]``."""
        outs, results = self._outputs(1)
        self._run([record], outs)
        collected = self._collect(outs, 1)
        single = []
        for f, res, col in zip(self._features, results, collected):
            if f.direct:
                single.append(res[0][0, ...])
            elif f.spec.kind == lib.DBR_FEATURE_VAR:
                single.append(col[0])
            else:
                value = self._shape_batch(f, col[0], col[1], 1)[0, ...]
                single.append(value.reshape(1) if value.ndim == 0 else value)
        return single

    def parse_single_example_inplace(self, record: bytes, arrays: list, index: int) -> None:
        """Parses one record into preallocated arrays, as DareBlopy 0.0.5
        does: ``arrays[k]`` is either a batch ``[N, *shape]`` filled at row
        ``index``, or shaped like the feature itself (``index`` 0), e.g.
        ``np.zeros(3, np.int64)`` for ``FixedLenFeature([3], int64)``.
        String features take object arrays (``[N]`` or ``[1]`` for shape [])."""
        if len(arrays) != len(self._features):
            raise InvalidArgumentError(
                f"parse_single_example_inplace: {len(arrays)} arrays for "
                f"{len(self._features)} features")
        outs, _ = self._outputs(1, arrays, index)
        self._run([record], outs)
        collected = self._collect(outs, 1)
        for k, f in enumerate(self._features):
            if not f.direct:
                value = self._shape_batch(f, collected[k][0], collected[k][1], 1)
                value = value.values if isinstance(value, Ragged) else value[0]
                target = arrays[k]
                if _whole(f, target, index):
                    target[...] = value
                else:
                    target[index] = value

    def _parse_at(self, handles, offsets, frame_lengths, verify=True, alloc=np.empty,
                  errors="raise"):
        """Reads records by index entries and parses them: one C call.
        ``alloc(shape, dtype)`` makes the arrays of direct features.
        errors="raise" raises for the first failed record (naming its file
        and offset); errors="return" returns ``(batch, {index: exception})``,
        where a failed record's rows are zeros (or empty) and each
        exception comes from libdbr's per-record outcome."""
        check_errors_mode(errors)
        n = len(offsets)
        outs, results = self._outputs(n, alloc=alloc)
        files = ffi.new("dbr_file *[]", handles)
        offs = ffi.from_buffer("uint64_t[]", offsets)
        lens = ffi.from_buffer("uint64_t[]", frame_lengths)
        outcomes = Outcomes(n) if errors == "return" else None
        rc = lib.dbr_tfrecord_parse_at_ex(
            self._parser, files, offs, lens, n, int(verify), outs, self._threads,
            *(outcomes.args if outcomes else (ffi.NULL, ffi.NULL, 0)))
        if rc < 0 and outcomes is None:
            err = error_from_code(rc)
            lib.dbr_feature_out_clear(outs, len(self._features))
            raise err
        batch = self._finish(outs, results, n)
        return batch if outcomes is None else (batch, outcomes.errors() if rc < 0 else {})


def _whole(f, arr, index) -> bool:
    """True when ``arr`` is shaped like one value of the feature (0.0.5's
    per-record arrays) rather than a batch of them."""
    return isinstance(arr, np.ndarray) and arr.shape == f.shape and index == 0


def _check_inplace(f, arr, index):
    if not isinstance(arr, np.ndarray) or arr.dtype != f.np_dtype:
        # the type is wrong, not the value: TypeError, as 0.0.5 (numpy's cast) raised
        raise TypeError(f"feature '{f.name}': parse_single_example_inplace needs a numpy "
                        f"array of dtype {f.np_dtype}, not {getattr(arr, 'dtype', type(arr))}")
    if (not arr.flags.c_contiguous
            or not arr.flags.writeable
            or not (_whole(f, arr, index) or
                    (arr.shape[1:] == f.shape and 0 <= index < arr.shape[0]))):
        shape = ", ".join(map(str, f.shape))
        raise InvalidArgumentError(
            f"feature '{f.name}': the array must be a writable C-contiguous {f.np_dtype} of "
            f"shape [N, {shape}] with index < N, or [{shape}] with index 0")


# ---- the builder ---------------------------------------------------------


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _out_of_range(v: int):
    """int64_list holds int64 values; TensorFlow raises ValueError too."""
    raise InvalidArgumentError(
        f"Value out of range: {v} (an int64 feature holds -2**63 .. 2**63-1)")


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _feature(value) -> bytes:
    """A serialized tf.train.Feature from bytes, str, numbers, lists or numpy."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        value = [value]
    elif isinstance(value, np.ndarray):
        if value.dtype == np.uint8:
            value = [value.tobytes()]  # an image: one bytes value, the uint8 convention
        elif value.dtype.kind in "iub":
            if value.dtype.kind == "u" and value.size and int(value.max()) > _INT64_MAX:
                _out_of_range(int(value.max()))
            value = value.astype(np.int64).ravel()
        elif value.dtype.kind == "f":
            return _field(2, _field(1, value.astype("<f4").tobytes()))
        elif value.dtype.kind in "OSU":
            value = list(value.ravel())
        else:
            raise InvalidArgumentError(f"cannot store a numpy array of dtype {value.dtype}")
    elif isinstance(value, (int, float, np.integer, np.floating, bool, np.bool_)):
        value = [value]
    value = list(value)
    if all(isinstance(v, (bytes, bytearray, memoryview, str)) for v in value) and value:
        items = b"".join(_field(1, v.encode() if isinstance(v, str) else bytes(v))
                         for v in value)
        return _field(1, items)
    if all(isinstance(v, (int, np.integer, bool, np.bool_)) for v in value):
        ints = [int(v) for v in value]
        for v in ints:
            if not _INT64_MIN <= v <= _INT64_MAX:
                _out_of_range(v)
        packed = b"".join(_varint(v) for v in ints)
        return _field(3, _field(1, packed) if value else b"")
    if all(isinstance(v, (int, float, np.integer, np.floating)) for v in value):
        return _field(2, _field(1, struct.pack(f"<{len(value)}f", *value)))
    raise InvalidArgumentError("feature values must be all bytes/str, all ints or all floats")


def _features(d: Dict[str, object]) -> bytes:
    return b"".join(_field(1, _field(1, str(k).encode()) + _field(2, _feature(v)))
                    for k, v in d.items())


def serialize_example(features: Dict[str, object]) -> bytes:
    """A serialized tf.train.Example from a dict of name -> value: bytes or
    str (bytes_list), ints (int64_list), floats (float_list), lists of
    those, or numpy arrays (uint8 arrays become one bytes value; integer and
    float arrays are flattened)."""
    return _field(1, _features(features))


def serialize_sequence_example(context: Dict[str, object],
                               feature_lists: Dict[str, Sequence[object]]) -> bytes:
    """A serialized tf.train.SequenceExample: context as in
    serialize_example, and for each feature list a sequence of step values."""
    lists = b"".join(_field(1, _field(1, str(k).encode()) +
                            _field(2, b"".join(_field(1, _feature(s)) for s in steps)))
                     for k, steps in feature_lists.items())
    return _field(1, _features(context)) + _field(2, lists)


class Example(dict):
    """A dict of features that serializes to a tf.train.Example."""

    def SerializeToString(self) -> bytes:  # noqa: N802 - protobuf's name
        return serialize_example(self)

    serialize = SerializeToString
