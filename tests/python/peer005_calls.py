"""The same calls through DareBlopy 0.0.5 and through dareblopy.

Each case is a function ``case(db)`` run with the fixture folder of
peer005_fixtures.py as the working directory; what it returns (or the
exception it raises) is encoded into plain Python values by ``encode``.
test_peer005_differential.py runs every case in-process with dareblopy,
and runs this file as a script in the Python 3.8 venv, where ``import
dareblopy`` is DareBlopy 0.0.5, which writes its results as a pickle
(protocol 4: builtins only, so numpy versions do not matter).

Python 3.8 syntax and numpy only: this file runs beside 0.0.5."""
import os
import pickle
import sys

import numpy as np

R = "test_utils/"
PLAIN = [R + "test-small-r%02d.tfrecords" % k for k in range(4)]
GZIP = [R + "test-small-gzip-r%02d.tfrecords" % k for k in range(4)]
MIXED = R + "mixed.tfrecords"

CASES = {}      # calls whose results must agree
DIVERGENT = {}  # calls where 0.0.5 is wrong or crashes: see the README's table


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def divergent(fn):
    DIVERGENT[fn.__name__] = fn
    return fn


# ---- encoding results --------------------------------------------------------

class Pixels:
    """A decoded image: compared by shape and mean absolute difference
    (0.0.5 decodes with another libjpeg build)."""

    def __init__(self, array):
        self.array = array


class Unordered:
    """A sequence whose order is random by design (each implementation has
    its own shuffle): compared as a sorted multiset, plus its length."""

    def __init__(self, items):
        self.items = items


def encode(value):
    if isinstance(value, Pixels):
        a = np.asarray(value.array)
        return ("pixels", a.dtype.str, list(a.shape), a.astype(np.uint8).tobytes())
    if isinstance(value, Unordered):
        return ("unordered", sorted(repr(encode(v)) for v in value.items))
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return ("ndarray", "object", list(value.shape), [encode(v) for v in value.ravel()])
        return ("ndarray", value.dtype.str, list(value.shape), value.tobytes())
    if isinstance(value, np.generic):
        return ("npscalar", value.dtype.str, value.item())
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return (type(value).__name__, value)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [encode(v) for v in value])
    if isinstance(value, dict):
        return ("dict", sorted((k, encode(v)) for k, v in value.items()))
    return ("object", type(value).__name__)


def builtin_bases(exc):
    """The builtin exception classes an exception is an instance of (what
    ``except`` clauses in user code name)."""
    return [c.__name__ for c in type(exc).__mro__ if c.__module__ == "builtins"]


def run(db, names=None):
    out = {}
    every = dict(CASES, **DIVERGENT)
    for name in names or sorted(CASES):
        try:
            out[name] = ("ok", encode(every[name](db)))
        except Exception as exc:  # every exception is a result to compare
            out[name] = ("raise", builtin_bases(exc), type(exc).__name__, str(exc))
    return out


def drain(yielder, n):
    """next_n(n) until StopIteration, as 0.0.5's suite does."""
    batches = []
    while True:
        try:
            batches.append(yielder.next_n(n))
        except StopIteration:
            return batches


def mixed_features(db):
    return {"label": db.FixedLenFeature([], db.int64),
            "weights": db.FixedLenFeature([2], db.float32),
            "name": db.FixedLenFeature([], db.string),
            "pixels": db.FixedLenFeature([2, 3], db.uint8)}


def mixed_records():
    with open(R + "mixed-records.pth", "rb") as fh:
        return pickle.load(fh)


# ---- names -------------------------------------------------------------------

@case
def constants(db):
    modes = [db.read, db.write, db.append, db.read_update, db.write_update, db.append_update]
    return ([int(m) for m in modes], [m.name for m in modes], int(db.Mode.read),
            [int(c) for c in (db.Compression.NONE, db.Compression.GZIP, db.Compression.ZLIB)],
            [int(c) for c in (db.NONE, db.GZIP, db.ZLIB)],
            [t.name for t in (db.string, db.float32, db.int64, db.uint8)])


@case
def status_object(db):
    s = db.Status()
    return s.is_eof(), bool(s)


@case
def utils_make_grid(db):
    rng = np.random.RandomState(3)
    images = rng.randint(0, 256, (11, 3, 5, 7)).astype(np.uint8)
    return [db.utils.make_grid(images), db.utils.make_grid(images, nrow=4, padding=1),
            db.utils.make_grid(images[:1], nrow=8, padding=0)]


# ---- files -------------------------------------------------------------------

@case
def open_as_bytes(db):
    return db.open_as_bytes(R + "test_archive.zip")


@case
def open_as_bytes_missing(db):
    return db.open_as_bytes(R + "missing.bin")


@case
def open_as_numpy_ubyte(db):
    return db.open_as_numpy_ubyte(R + "not_a_record.bin")


@case
def open_as_numpy_ubyte_missing(db):
    return db.open_as_numpy_ubyte(R + "missing.bin")


@case
def read_jpg(db):
    return Pixels(db.read_jpg_as_numpy(R + "test_image.jpg"))


@case
def read_jpg_turbo(db):
    return Pixels(db.read_jpg_as_numpy(R + "test_image.jpg", True))


@case
def read_jpg_missing(db):
    return db.read_jpg_as_numpy(R + "missing.jpg")


@case
def read_jpg_not_a_jpeg(db):
    return db.read_jpg_as_numpy(R + "not_a_record.bin")


# ---- FileSystem --------------------------------------------------------------

@case
def filesystem_file_ops(db):
    fs = db.FileSystem()
    f = fs.open(R + "test_archive.zip")
    out = [fs.exists("README.md"), fs.exists("README_missing.md"),
           fs.exists(db.Location("README.md")), type(f).__name__, f.tell(), f.size()]
    out.append(f.read(10))
    out.append(f.tell())
    out.append(f.seek(-4, 2))
    out.append(f.read())
    out.append(f.read())
    f.seek(3)
    out.append(f.read(5))
    out.append(os.path.basename(f.path()) if callable(f.path) else os.path.basename(f.path))
    out.append(abs(f.get_last_write_time() - int(os.path.getmtime(R + "test_archive.zip"))) <= 1)
    return out


@case
def filesystem_open_missing_is_none(db):
    fs = db.FileSystem()
    return [fs.open(R + "missing.bin"), fs.open(db.Location(R + "missing.bin"))]


@case
def filesystem_open_modes(db):
    fs = db.FileSystem()
    return [fs.open(R + "test_archive.zip", db.read).read(4),
            fs.open(R + "test_archive.zip", db.Mode.read, True).read(4),
            fs.open(R + "test_archive.zip", lockable=True).read(4)]


@case
def filesystem_create_rename_remove(db):
    fs = db.FileSystem()
    out = []
    for step in (lambda: fs.create_directory("made"), lambda: fs.exists("made"),
                 lambda: fs.create_directory("made"),
                 lambda: fs.rename("made", "moved"), lambda: fs.exists("made"),
                 lambda: fs.exists("moved"), lambda: fs.remove("moved"),
                 lambda: fs.exists("moved")):
        r = step()
        out.append(r if isinstance(r, bool) else (type(r).__name__, r.is_eof()))
    return out


@case
def filesystem_search_paths(db):
    fs = db.FileSystem()
    fs.push_search_path(R)
    out = [fs.open("not_a_record.bin").read(), fs.exists("test_image.jpg"),
           fs.open("missing.bin")]
    fs.pop_search_path()
    out.append(fs.exists("test_image.jpg"))
    fs.push_search_path(R)
    fs.clear_search_paths()
    out.append(fs.exists("test_image.jpg"))
    return out


@case
def filesystem_mount_archive(db):
    fs = db.FileSystem()
    zf = fs.open(R + "test_archive.zip", lockable=True)
    status = fs.mount_archive(db.open_zip_archive(zf))
    return [type(status).__name__, fs.open("test.txt").read(), fs.exists("test.txt"),
            fs.exists("nope.txt"), fs.open("nope.txt"), fs.open("sub/inner.bin").read()]


# ---- Archive -----------------------------------------------------------------

@case
def archive_reads(db):
    a = db.open_zip_archive(R + "test_archive.zip")
    return [type(a).__name__, a.exists("test.txt"), a.exists("missing.txt"),
            a.open("test.txt").read(), a.open("missing.txt"), a.open_as_bytes("sub/inner.bin"),
            a.open_as_numpy_ubyte("test.txt", None)]


@case
def archive_from_file(db):
    fs = db.FileSystem()
    a = db.open_zip_archive(fs.open(R + "test_archive.zip", lockable=True))
    f = a.open("sub/inner.bin")
    return [f.size(), f.read(7), f.tell(), f.seek(-3, 2), f.read()]


@divergent
def archive_from_unlockable_file(db):
    fs = db.FileSystem()
    a = db.open_zip_archive(fs.open(R + "test_archive.zip"))
    return a.open("sub/inner.bin").read()


@divergent
def archive_with_comment_by_cpython(db):
    return db.open_zip_archive(R + "cpython_comment.zip").open_as_bytes("a.txt")


@divergent
def archive_not_a_zip(db):
    return db.open_zip_archive(R + "not_a_record.bin").exists("x")


@divergent
def read_jpg_gray(db):
    return db.read_jpg_as_numpy(R + "gray.jpg")


@divergent
def read_jpg_cmyk(db):
    return db.read_jpg_as_numpy(R + "cmyk.jpg")


@divergent
def archive_list_directory(db):
    return db.open_zip_archive(R + "test_archive.zip").list_directory("")


@case
def archive_open_as_bytes_missing(db):
    return db.open_zip_archive(R + "test_archive.zip").open_as_bytes("missing.txt")


@case
def archive_read_jpg(db):
    return Pixels(db.open_zip_archive(R + "test_image_archive.zip").read_jpg_as_numpy("0.jpg"))


@case
def archive_read_jpg_missing(db):
    return db.open_zip_archive(R + "test_image_archive.zip").read_jpg_as_numpy("1.jpg")


@case
def archive_missing(db):
    return db.open_zip_archive(R + "missing.zip")


# ---- RecordReader ------------------------------------------------------------

@case
def record_reader(db):
    rr = db.RecordReader(PLAIN[1])
    return [rr.get_metadata(), list(rr), rr.read_record(0)]


@case
def record_reader_from_file(db):
    rr = db.RecordReader(db.FileSystem().open(PLAIN[2]))
    return [rr.get_metadata(), list(rr)]


@case
def record_reader_gzip(db):
    rr = db.RecordReader(GZIP[0], db.Compression.GZIP)
    return list(rr)


@case
def record_reader_missing(db):
    return list(db.RecordReader(R + "missing.tfrecords"))


@case
def record_reader_not_a_record(db):
    return list(db.RecordReader(R + "not_a_record.bin"))


@case
def record_reader_metadata_not_a_record(db):
    return db.RecordReader(R + "not_a_record.bin").get_metadata()


# ---- RecordParser ------------------------------------------------------------

@case
def parse_single_example_image(db):
    p = db.RecordParser({"shape": db.FixedLenFeature([3], db.int64),
                         "data": db.FixedLenFeature([], db.string)})
    return [p.parse_single_example(r) for r in list(db.RecordReader(PLAIN[0]))[:5]]


@case
def parse_single_example_mixed(db):
    p = db.RecordParser(mixed_features(db))
    return [p.parse_single_example(r) for r in mixed_records()]


@case
def parse_example_mixed(db):
    p = db.RecordParser(mixed_features(db), False)
    return p.parse_example(mixed_records())


@case
def parse_example_strings(db):
    records = mixed_records()
    out = []
    for shape in ([], [1]):
        # run_parallel=False: 0.0.5's threaded string parsing races (below)
        p = db.RecordParser({"name": db.FixedLenFeature(shape, db.string)}, False)
        out += [p.parse_example(records), p.parse_single_example(records[0])]
    return out


@divergent
def parse_example_strings_threaded(db):
    """The number of threaded batch parses of string features, of up to
    2000, that go wrong (stops at the first)."""
    records = mixed_records()
    expected = [b"sample %d" % k for k in range(len(records))]
    for _ in range(2000):
        p = db.RecordParser({"name": db.FixedLenFeature([1], db.string)}, True)
        if [row[0] for row in p.parse_example(records)[0]] != expected:
            return 1
    return 0


@case
def parse_single_example_inplace(db):
    p = db.RecordParser(mixed_features(db))
    label = np.zeros([], np.int64)
    weights = np.zeros(2, np.float32)
    name = np.asarray([bytes()], dtype=object)
    pixels = np.zeros([2, 3], np.uint8)
    out = []
    for r in mixed_records():
        p.parse_single_example_inplace(r, [label, weights, name, pixels], 0)
        out.append([label.copy(), weights.copy(), name.copy(), pixels.copy()])
    return out


@case
def parse_single_example_inplace_batch_rows(db):
    p = db.RecordParser({"weights": db.FixedLenFeature([2], db.float32),
                         "pixels": db.FixedLenFeature([2, 3], db.uint8),
                         "name": db.FixedLenFeature([], db.string)})
    records = mixed_records()
    weights = np.zeros([len(records), 2], np.float32)
    pixels = np.zeros([len(records), 2, 3], np.uint8)
    names = np.asarray([bytes()] * len(records), dtype=object)
    for i, r in enumerate(records):
        p.parse_single_example_inplace(r, [weights, pixels, names], i)
    return [weights, pixels, names]


@case
def parse_missing_feature(db):
    p = db.RecordParser({"absent": db.FixedLenFeature([], db.int64)})
    return p.parse_single_example(mixed_records()[0])


@case
def parse_mistyped_feature(db):
    p = db.RecordParser({"label": db.FixedLenFeature([], db.float32)})
    return p.parse_single_example(mixed_records()[0])


@case
def parse_wrong_count(db):
    p = db.RecordParser({"weights": db.FixedLenFeature([3], db.float32)})
    return p.parse_single_example(mixed_records()[0])


@divergent
def parse_example_wrong_count(db):
    p = db.RecordParser({"weights": db.FixedLenFeature([3], db.float32)})
    return p.parse_example(mixed_records())


@divergent
def parse_default_value(db):
    p = db.RecordParser({"absent": db.FixedLenFeature([2], db.int64, [7, 8]),
                         "label": db.FixedLenFeature([], db.int64)})
    return [p.parse_single_example(mixed_records()[0]), p.parse_example(mixed_records()[:3])]


# ---- yielders ----------------------------------------------------------------

@case
def yielder_basic(db):
    return drain(db.RecordYielderBasic(PLAIN), 32)


@case
def yielder_basic_gzip(db):
    return drain(db.RecordYielderBasic(GZIP, db.Compression.GZIP), 45)


@divergent
def next_n_negative(db):
    y = db.RecordYielderBasic(PLAIN[:1])
    return [len(y.next_n(-1)), len(y.next_n(3))]


@case
def next_n_zero(db):
    y = db.RecordYielderBasic(PLAIN[:1])
    r = db.RecordYielderRandomized(PLAIN[:1], 4, 0, 0)
    return [y.next_n(0), len(y.next_n(3)), r.next_n(0), len(r.next_n(3))]


@case
def yielder_basic_iterates(db):
    y = db.RecordYielderBasic(PLAIN[:1])
    return [next(y), next(y), y.next_n(3)]


@case
def yielder_basic_missing(db):
    return drain(db.RecordYielderBasic([R + "missing.tfrecords"]), 4)


@case
def yielder_randomized(db):
    batches = drain(db.RecordYielderRandomized(PLAIN, buffer_size=16, seed=0, epoch=0), 32)
    return [len(b) for b in batches], Unordered([r for b in batches for r in b])


@case
def yielder_randomized_gzip(db):
    batches = drain(db.RecordYielderRandomized(GZIP, 16, 3, 1, db.Compression.GZIP), 50)
    return [len(b) for b in batches], Unordered([r for b in batches for r in b])


@case
def yielder_randomized_missing(db):
    return drain(db.RecordYielderRandomized([R + "missing.tfrecords"], 16, 0, 0), 4)


@case
def yielder_parsed_randomized(db):
    p = db.RecordParser({"data": db.FixedLenFeature([3, 32, 32], db.uint8),
                         "shape": db.FixedLenFeature([3], db.int64)})
    batches = drain(db.ParsedRecordYielderRandomized(p, PLAIN, 16, 5, 0), 64)
    return ([[a.shape for a in b] for b in batches],
            Unordered([(b[0][i], b[1][i]) for b in batches for i in range(len(b[0]))]))


@case
def yielder_parsed_randomized_buffer_one(db):
    p = db.RecordParser({"data": db.FixedLenFeature([3, 32, 32], db.uint8)})
    return drain(db.ParsedRecordYielderRandomized(p, PLAIN[:1], 1, 0, 0), 20)


# ---- dataset iterators -------------------------------------------------------

@case
def tfrecords_dataset_iterator(db):
    batches = list(db.TFRecordsDatasetIterator(PLAIN, 40, buffer_size=8, seed=2))
    return [len(b) for b in batches], Unordered([r for b in batches for r in b])


@case
def tfrecords_dataset_iterator_buffer_one(db):
    return list(db.TFRecordsDatasetIterator(PLAIN[:1], 16, buffer_size=1, seed=4))


@case
def parsed_dataset_iterator_file_order(db):
    features = {"data": db.FixedLenFeature([3, 32, 32], db.uint8)}
    return list(db.ParsedTFRecordsDatasetIterator(PLAIN[:1], features, 32, buffer_size=1))


@case
def parsed_dataset_iterator_gzip(db):
    features = {"shape": db.FixedLenFeature([3], db.int64),
                "data": db.FixedLenFeature([3, 32, 32], db.uint8)}
    batches = list(db.ParsedTFRecordsDatasetIterator(GZIP, features, 30, buffer_size=10, seed=1,
                                                      compression=db.Compression.GZIP))
    return ([b[1].shape for b in batches],
            Unordered([b[1][i] for b in batches for i in range(len(b[1]))]))


# ---- data_loader -------------------------------------------------------------

@case
def data_loader_in_order(db):
    def batches():
        for k in range(7):
            yield np.full((2, 3), k, np.int64)
    loader = db.data_loader(batches(), collator=lambda b: b * 10, iteration_count=7)
    return len(loader), [x for x in loader]


@case
def data_loader_workers_share_a_yielder(db):
    # 0.0.5's workers call next() on one yielder from several threads
    basic = db.data_loader(db.RecordYielderBasic(PLAIN), worker_count=3, queue_size=4)
    shuffled = db.data_loader(db.RecordYielderRandomized(PLAIN, 16, 0, 0), worker_count=3,
                              queue_size=4)
    return [Unordered(list(basic)), Unordered(list(shuffled))]


@case
def data_loader_over_dataset_iterator(db):
    features = {"data": db.FixedLenFeature([3, 32, 32], db.uint8)}
    it = db.ParsedTFRecordsDatasetIterator(PLAIN[:1], features, 16, buffer_size=1)
    return list(db.data_loader(it, collator=lambda b: b[0].sum(axis=(1, 2, 3))))


@divergent
def filesystems_share_state(db):
    """0.0.5's FileSystem objects are views of one process-wide file system."""
    a, b = db.FileSystem(), db.FileSystem()
    a.push_search_path(R)
    a.mount_archive(db.open_zip_archive(R + "test_archive.zip"))
    return [b.exists("not_a_record.bin"), b.exists("test.txt")]


@divergent
def filesystem_open_directory(db):
    return db.FileSystem().open("test_utils")


# ---- argument forms 0.0.5 code uses ------------------------------------------

@case
def keyword_names(db):
    """0.0.5's keyword names (pybind11 kept the C++ parameter names)."""
    return [db.open_as_numpy_ubyte(filename=R + "not_a_record.bin"),
            Pixels(db.read_jpg_as_numpy(filename=R + "test_image.jpg", use_turbo=True)),
            Pixels(db.open_zip_archive(R + "test_image_archive.zip").read_jpg_as_numpy(
                filename="0.jpg", use_turbo=False)),
            len(list(db.RecordReader(filename=PLAIN[0], compression=db.Compression.NONE))),
            len(list(db.RecordReader(file=db.FileSystem().open(PLAIN[0]))))]


@case
def archive_read_jpg_use_turbo_positional(db):
    a = db.open_zip_archive(R + "test_image_archive.zip")
    return [Pixels(a.read_jpg_as_numpy("0.jpg", True)), Pixels(a.read_jpg_as_numpy("0.jpg", False))]


@case
def file_path_is_a_method(db):
    f = db.FileSystem().open(R + "not_a_record.bin")
    return os.path.basename(f.path())


@case
def record_reader_next(db):
    """0.0.5's RecordReader is its own iterator: next() takes a record, and
    a loop after it goes on from there (skipping a header record)."""
    rr = db.RecordReader(PLAIN[1])
    first = next(rr)
    rest = [r for r in rr]
    return [first, len(rest), rest[0], rr.read_record(0) == first]


@case
def parse_str_record(db):
    """pybind11 turned a str into its UTF-8 bytes; a str that is not an
    Example fails like any malformed record."""
    p = db.RecordParser({"label": db.FixedLenFeature([], db.int64)})
    return p.parse_single_example(mixed_records()[0].decode("latin-1"))


@case
def yielder_given_one_filename(db):
    """A str where 0.0.5 wants a list of filenames: refused with TypeError."""
    return db.RecordYielderBasic(PLAIN[0])


@case
def inplace_wrong_dtype(db):
    p = db.RecordParser({"pixels": db.FixedLenFeature([2, 3], db.uint8)})
    p.parse_single_example_inplace(mixed_records()[0], [np.zeros([2, 3], np.float32)], 0)


@case
def enum_str(db):
    return [str(db.Compression.GZIP), str(db.Mode.read), str(db.float32),
            "%s" % db.Compression.NONE]


if __name__ == "__main__":
    # argv: fixture folder, output pickle[, case names...]
    import dareblopy
    os.chdir(sys.argv[1])
    with open(sys.argv[2], "wb") as fh:
        pickle.dump(run(dareblopy, sys.argv[3:]), fh, protocol=4)
