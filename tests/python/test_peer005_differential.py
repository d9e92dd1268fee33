"""Differential tests against DareBlopy 0.0.5 itself.

The calls of peer005_calls.py run in a Python 3.8 process where ``import
dareblopy`` is DareBlopy 0.0.5 (``make peers`` builds that venv), and
in-process against this dareblopy, over the same fixture files.  Results
must agree: values, types (list, tuple, ndarray dtype and shape, bytes,
None), and exceptions (ours must be catchable by the builtin class 0.0.5
raised).  Where 0.0.5 is wrong or crashes (the DIVERGENT calls, listed in
the README's compatibility table), each call is run alone and both sides
are checked against the right answer."""
import io
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import dareblopy as db
import peer005_calls as calls
import peer005_fixtures

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(ROOT, ".venv38", "bin", "python")
CALLS = os.path.join(HERE, "peer005_calls.py")

pytestmark = pytest.mark.skipif(
    not os.path.exists(PEER),
    reason="DareBlopy 0.0.5 needs the Python 3.8 venv .venv38 (`make peers` builds it)")


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return peer005_fixtures.make(str(tmp_path_factory.mktemp("peer005")))


def peer_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "DAREBLOPY"))}
    return env


def run_peer(fixtures, out, names=()):
    """Runs cases in DareBlopy 0.0.5; returns (returncode, results or None)."""
    proc = subprocess.run([PEER, CALLS, fixtures, out] + list(names), env=peer_env(),
                          cwd=fixtures, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=120)
    if proc.returncode != 0:
        return proc.returncode, proc.stderr.decode(errors="replace")
    with open(out, "rb") as fh:
        return 0, pickle.load(fh)


def run_ours(fixtures, names):
    cwd = os.getcwd()
    os.chdir(fixtures)
    try:
        return calls.run(db, names)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def peer_results(fixtures, tmp_path_factory):
    rc, results = run_peer(fixtures, str(tmp_path_factory.mktemp("out") / "peer.pkl"))
    assert rc == 0, f"DareBlopy 0.0.5 crashed on a call expected to agree: {results}"
    return results


@pytest.fixture(scope="module")
def our_results(fixtures):
    return run_ours(fixtures, sorted(calls.CASES))


# ---- comparison --------------------------------------------------------------

PIXEL_TOLERANCE = 1.0  # mean |difference|: 0.0.5 decodes with another libjpeg build


def differences(peer, ours, where="result"):
    """Human-readable differences between two encoded values (none: equal)."""
    if peer == ours:
        return []
    if not (isinstance(peer, tuple) and isinstance(ours, tuple)) or peer[0] != ours[0]:
        return [f"{where}: 0.0.5 gave {_short(peer)}, dareblopy gave {_short(ours)}"]
    kind = peer[0]
    if kind == "pixels":
        if peer[1:3] != ours[1:3]:
            return [f"{where}: image {peer[1:3]} vs {ours[1:3]}"]
        a = np.frombuffer(peer[3], np.uint8).astype(int)
        b = np.frombuffer(ours[3], np.uint8).astype(int)
        err = np.abs(a - b).mean()
        return [] if err <= PIXEL_TOLERANCE else [f"{where}: pixels differ by {err:.2f} on average"]
    if kind in ("list", "tuple"):
        if len(peer[1]) != len(ours[1]):
            return [f"{where}: {kind} of {len(peer[1])} vs {len(ours[1])}"]
        out = []
        for i, (p, o) in enumerate(zip(peer[1], ours[1])):
            out += differences(p, o, f"{where}[{i}]")
        return out
    if kind == "ndarray" and peer[1:3] == ours[1:3] and peer[1] == "object":
        out = []
        for i, (p, o) in enumerate(zip(peer[3], ours[3])):
            out += differences(p, o, f"{where}.flat[{i}]")
        return out
    if kind == "ndarray" and peer[1:3] != ours[1:3]:
        return [f"{where}: array {peer[1]}{peer[2]} vs {ours[1]}{ours[2]}"]
    return [f"{where}: 0.0.5 gave {_short(peer)}, dareblopy gave {_short(ours)}"]


def _short(v):
    text = repr(v)
    return text if len(text) < 160 else text[:160] + "..."


def compare(peer, ours):
    if peer[0] == "raise" and ours[0] == "raise":
        expected = peer[1][0]  # the most specific builtin class 0.0.5 raised
        assert expected in ours[1], (
            f"0.0.5 raised {expected} ({peer[3]!r}); dareblopy raised {ours[2]} "
            f"({ours[3]!r}), not catchable as {expected}")
        return
    assert peer[0] == ours[0], f"0.0.5: {_short(peer)}\ndareblopy: {_short(ours)}"
    problems = differences(peer[1], ours[1])
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("name", sorted(calls.CASES))
def test_same_as_dareblopy_005(name, peer_results, our_results):
    compare(peer_results[name], our_results[name])


def test_cases_cover_the_005_surface():
    """Every public name of 0.0.5 that holds behaviour is driven by a case."""
    source = open(CALLS).read()
    for name in ["FileSystem", "open_as_bytes", "open_as_numpy_ubyte", "read_jpg_as_numpy",
                 "open_zip_archive", "mount_archive", "push_search_path", "pop_search_path",
                 "clear_search_paths", "create_directory", "rename", "remove", "lockable",
                 "get_last_write_time", "RecordReader", "get_metadata", "read_record",
                 "parse_single_example", "parse_single_example_inplace", "parse_example",
                 "RecordYielderBasic", "RecordYielderRandomized",
                 "ParsedRecordYielderRandomized", "next_n", "TFRecordsDatasetIterator",
                 "ParsedTFRecordsDatasetIterator", "data_loader", "utils.make_grid", "Status",
                 "Location", "Compression.GZIP"]:
        assert name in source, name


# ---- where 0.0.5 is wrong: both sides checked against the right answer -------

def peer_alone(fixtures, tmp_path, name):
    return run_peer(fixtures, str(tmp_path / f"{name}.pkl"), [name])


def ours_alone(fixtures, name):
    return run_ours(fixtures, [name])[name]


def crashed(rc):
    return rc < 0  # killed by a signal (SIGSEGV, SIGABRT)


def test_cpython_zip_with_comment(fixtures, tmp_path):
    import zipfile
    rc, _ = peer_alone(fixtures, tmp_path, "archive_with_comment_by_cpython")
    assert crashed(rc)
    with zipfile.ZipFile(os.path.join(fixtures, "test_utils", "cpython_comment.zip")) as z:
        expected = z.read("a.txt")
    assert ours_alone(fixtures, "archive_with_comment_by_cpython") == ("ok", ("bytes", expected))


def test_archive_over_unlockable_file(fixtures, tmp_path):
    rc, _ = peer_alone(fixtures, tmp_path, "archive_from_unlockable_file")
    assert crashed(rc)
    assert ours_alone(fixtures, "archive_from_unlockable_file") == \
        ("ok", ("bytes", bytes(range(256)) * 3))


def test_not_a_zip(fixtures, tmp_path):
    rc, res = peer_alone(fixtures, tmp_path, "archive_not_a_zip")
    # 0.0.5 opens it without complaint and claims an entry "x" exists
    assert rc == 0 and res["archive_not_a_zip"] == ("ok", ("bool", True))
    ours = ours_alone(fixtures, "archive_not_a_zip")
    assert ours[0] == "raise" and ours[2] == "CorruptDataError" and "RuntimeError" in ours[1]


def _pillow(fixtures, name, mode):
    from PIL import Image
    with Image.open(os.path.join(fixtures, "test_utils", name)) as im:
        return np.asarray(im.convert(mode))


def _pixels(encoded):
    kind, dtype, shape, data = encoded
    assert kind == "ndarray" and dtype == "|u1"
    return np.frombuffer(data, np.uint8).reshape(shape)


def test_grayscale_jpeg(fixtures, tmp_path):
    gray = _pillow(fixtures, "gray.jpg", "L")
    rc, res = peer_alone(fixtures, tmp_path, "read_jpg_gray")
    peer = _pixels(res["read_jpg_gray"][1])
    # 0.0.5: three channels that are not the gray image
    assert peer.shape == gray.shape + (3,)
    assert np.abs(peer[..., 0].astype(int) - gray).mean() > 20
    status, ours = ours_alone(fixtures, "read_jpg_gray")
    ours = _pixels(ours)
    assert ours.shape[:2] == gray.shape
    for c in range(ours.shape[2]):
        np.testing.assert_array_equal(ours[..., c], gray)


def test_cmyk_jpeg(fixtures, tmp_path):
    rc, _ = peer_alone(fixtures, tmp_path, "read_jpg_cmyk")
    assert crashed(rc)
    status, ours = ours_alone(fixtures, "read_jpg_cmyk")
    ours = _pixels(ours)
    rgb = _pillow(fixtures, "cmyk.jpg", "RGB")
    assert ours.shape == rgb.shape
    assert np.abs(ours.astype(int) - rgb).max() <= 2


def test_batched_parse_of_a_wrong_count(fixtures, tmp_path):
    rc, _ = peer_alone(fixtures, tmp_path, "parse_example_wrong_count")
    assert crashed(rc)  # 0.0.5 aborts the process from a worker thread
    ours = ours_alone(fixtures, "parse_example_wrong_count")
    assert ours[0] == "raise" and "RuntimeError" in ours[1] and "weights" in ours[3]


def test_threaded_string_parsing(fixtures, tmp_path):
    # 0.0.5 races here (wrong strings in some batches, or a segmentation
    # fault: seen in most runs, not all), so only our side is asserted: a race
    # that happens to go clean must not fail CI.
    assert ours_alone(fixtures, "parse_example_strings_threaded") == ("ok", ("int", 0))


def test_default_values(fixtures, tmp_path):
    rc, res = peer_alone(fixtures, tmp_path, "parse_default_value")
    assert res["parse_default_value"][0] == "raise"
    assert "not implemented" in res["parse_default_value"][3]
    status, ours = ours_alone(fixtures, "parse_default_value")
    records = pickle.load(open(os.path.join(fixtures, calls.R, "mixed-records.pth"), "rb"))
    p = db.RecordParser({"label": db.FixedLenFeature([], db.int64)})
    labels = [int(p.parse_single_example(r)[0]) for r in records[:3]]
    single, batch = ours[1]
    assert calls.encode(np.array([7, 8], np.int64)) == single[1][0]
    assert calls.encode(np.array([[7, 8]] * 3, np.int64)) == batch[1][0]
    assert calls.encode(np.array(labels, np.int64)) == batch[1][1]


def test_list_directory(fixtures, tmp_path):
    rc, res = peer_alone(fixtures, tmp_path, "archive_list_directory")
    assert res["archive_list_directory"] == ("ok", ("bool", False))
    assert ours_alone(fixtures, "archive_list_directory") == \
        ("ok", ("list", [("str", "sub/"), ("str", "test.txt")]))


def test_negative_next_n(fixtures, tmp_path):
    rc, res = peer_alone(fixtures, tmp_path, "next_n_negative")
    assert res["next_n_negative"] == ("ok", ("list", [("int", 0), ("int", 3)]))
    ours = ours_alone(fixtures, "next_n_negative")
    assert ours[0] == "raise" and "ValueError" in ours[1]


def test_filesystems_are_independent(fixtures, tmp_path):
    # A deliberate difference, not a fix of 0.0.5: its FileSystem objects
    # share one set of search paths and mounts; ours are independent, so a
    # library's FileSystem cannot change what another part of a program opens.
    rc, res = peer_alone(fixtures, tmp_path, "filesystems_share_state")
    assert res["filesystems_share_state"] == ("ok", ("list", [("bool", True), ("bool", True)]))
    assert ours_alone(fixtures, "filesystems_share_state") == \
        ("ok", ("list", [("bool", False), ("bool", False)]))


def test_open_of_a_directory(fixtures, tmp_path):
    # 0.0.5 returns None, as for a missing file; ours says what is wrong
    rc, res = peer_alone(fixtures, tmp_path, "filesystem_open_directory")
    assert res["filesystem_open_directory"] == ("ok", ("NoneType", None))
    ours = ours_alone(fixtures, "filesystem_open_directory")
    assert ours[0] == "raise" and "IsADirectoryError" in ours[1] and "test_utils" in ours[3]


# ---- 0.0.5's own suite, run by 0.0.5: the port is faithful -------------------

def test_upstream_suite_under_005(fixtures):
    probe = subprocess.run([PEER, "-c", "import PIL"], env=peer_env())
    if probe.returncode:
        pytest.skip("Pillow is not installed in .venv38 (`make peers` installs it)")
    env = dict(peer_env(), PEER005_FIXTURES=fixtures)
    proc = subprocess.run([PEER, "-m", "unittest", "-v", "test_peer005_upstream"], cwd=HERE,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    text = proc.stdout.decode(errors="replace")
    assert "Ran 17 tests" in text, text
    failed = {line.split()[0] for line in text.splitlines()
              if line.endswith(("FAIL", "ERROR")) and " ... " in line}
    # 0.0.5 decodes with its own libjpeg build, whose pixels differ from
    # Pillow's; every other test of its suite passes with our fixtures.
    assert failed <= {"test_reading_to_numpy", "test_reading_to_numpy_from_zip"}, text
