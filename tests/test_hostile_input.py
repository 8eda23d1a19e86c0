"""Hostile input and faults (issue #19): files crafted here, the real loaders, engine and Blender.

The contract: a bad file or argument is refused with ``MxrError`` (exit code 2 and one
``mxr: error:`` line on the command line, an ERROR report in Blender), never a traceback; inputs
and earlier outputs stay byte-identical; a refused bake leaves the scene as it was; the cache is
an optimisation that repairs itself. Fuzzing uses fixed seeds, so a failure reproduces.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mxr.ops.errors import MxrError
from mxr.ops.npz import declared_arrays
from mxr.ops.take import load_take, save_take

from test_take import make_take, npy_header

TAKE_MEMBERS_SEED = 19


def run_mxr(*arguments: object, timeout: float = 300) -> tuple[int, str, str]:
    """``python -m mxr.ops ARGUMENTS`` -> (exit code, stdout, stderr)."""
    result = subprocess.run([sys.executable, "-m", "mxr.ops", *map(str, arguments)],
                            capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def assert_refused(code: int, stderr: str, message: str = "") -> None:
    """Exit 2, an ``mxr: error:`` line saying ``message``, no traceback."""
    assert "Traceback" not in stderr, stderr[-2000:]
    assert code == 2, stderr[-2000:]
    errors = [line for line in stderr.splitlines() if line.startswith("mxr: error: ")]
    assert len(errors) == 1 and message in errors[0], stderr[-2000:]


@pytest.fixture(scope="module")
def take_bytes(tmp_path_factory) -> bytes:
    """A valid version-2 take (6 frames, one micro event, settings) as ``save_take`` writes it."""
    path = tmp_path_factory.mktemp("valid_take") / "take.npz"
    save_take(make_take(), path)
    return path.read_bytes()


def take_members(take_bytes: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(take_bytes), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def outcome(path: Path) -> str | None:
    """None if ``load_take`` keeps its contract on ``path`` (MxrError, or a take that validates),
    else what went wrong."""
    try:
        take = load_take(path)
    except MxrError:
        return None
    except Exception as error:  # noqa: BLE001 - any other exception breaks the contract
        return f"{type(error).__name__}: {str(error)[:120]}"
    try:
        take.validate()
    except MxrError as error:
        return f"loaded a take that does not validate: {error}"
    return None


def assert_every_case_kept_the_contract(failures: list[str], cases: int) -> None:
    assert not failures, f"{len(failures)} of {cases} corrupted takes broke the contract:\n" + "\n".join(failures[:12])


# -- 10 and 9: corrupted take files (fuzz, fixed seeds) --------------------------------------------
def corrupted(data: bytes, mode: str, rng: np.random.Generator) -> bytes:
    data = bytearray(data)
    if mode == "truncated":
        return bytes(data[: int(rng.integers(0, len(data)))])
    if mode == "flipped":
        for _ in range(int(rng.integers(1, 9))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        return bytes(data)
    start, length = int(rng.integers(len(data))), int(rng.integers(1, 65))  # "overwritten"
    run = data[start:start + length]
    data[start:start + length] = rng.integers(0, 256, len(run), dtype=np.uint8).tobytes()
    return bytes(data)


def test_truncated_takes_are_refused_clearly(take_bytes, tmp_path):
    """A take cut anywhere (a copy or download that stopped) is refused with MxrError."""
    rng, failures, cases = np.random.default_rng(1), [], 70
    path = tmp_path / "take.npz"
    for case in range(cases):
        path.write_bytes(corrupted(take_bytes, "truncated", rng))
        if (problem := outcome(path)) is not None:
            failures.append(f"case {case} ({path.stat().st_size} bytes): {problem}")
    assert_every_case_kept_the_contract(failures, cases)


def test_takes_with_flipped_or_overwritten_bytes_are_refused_clearly(take_bytes, tmp_path):
    rng, failures, cases = np.random.default_rng(2), [], 70
    path = tmp_path / "take.npz"
    for case in range(cases):
        mode = ("flipped", "overwritten")[case % 2]
        path.write_bytes(corrupted(take_bytes, mode, rng))
        if (problem := outcome(path)) is not None:
            failures.append(f"case {case} ({mode}): {problem}")
    assert_every_case_kept_the_contract(failures, cases)


def replacement(original: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An array of the wrong shape or dtype (or a plausible one) to put where ``original`` was."""
    choice = int(rng.integers(11))
    if choice == 0:
        return np.array(float(rng.normal()))  # a scalar
    if choice == 1:
        return np.array("some text")
    if choice == 2:
        return np.zeros(int(rng.integers(0, 4)))  # a short vector
    if choice == 3:
        return np.array(original).reshape(-1)  # flattened
    if choice == 4:
        return np.array(original)[..., None]  # an extra axis
    if choice == 5:
        return np.array(original).reshape(-1)[: max(0, original.size - 1)]  # one value short
    if choice == 6:
        dtype = np.dtype(("U4", "S3", "f2", "i1", "c8", "?")[int(rng.integers(6))])
        try:
            return np.array(original).astype(dtype)
        except (ValueError, TypeError):  # text that is not a number: zeros of that dtype instead
            return np.zeros(np.shape(original), dtype)
    if choice == 7:
        return np.full(np.shape(original), np.nan)  # NaN everywhere (scalars: a NaN scalar)
    if choice == 8:
        return np.full(np.shape(original), 1e30)
    if choice == 9:
        return np.array([1, None], dtype=object)  # needs a pickle: never loaded
    return np.concatenate([np.atleast_1d(original)] * 2)  # twice as long


def test_takes_with_members_of_the_wrong_shape_or_dtype_are_refused_or_sound(take_bytes, tmp_path):
    """One member replaced (or removed) in an otherwise valid take: MxrError, or a take that validates."""
    members = take_members(take_bytes)
    names = sorted(members)
    rng, failures, cases = np.random.default_rng(TAKE_MEMBERS_SEED), [], 100
    path = tmp_path / "take.npz"
    for case in range(cases):
        arrays = dict(members)
        name = names[int(rng.integers(len(names)))]
        if rng.random() < 0.08:
            del arrays[name]
            change = f"{name} removed"
        else:
            arrays[name] = replacement(members[name], rng)
            change = f"{name} -> {arrays[name].dtype}{arrays[name].shape}"
        np.savez(path, **arrays)
        if (problem := outcome(path)) is not None:
            failures.append(f"case {case} ({change}): {problem}")
    assert_every_case_kept_the_contract(failures, cases)


@pytest.mark.parametrize("member, value", [
    ("version", np.array([2, 2])),
    ("fps", np.array([30.0, 30.0])),
    ("crop_size_px", np.array([256, 256])),
    ("frame_size", np.array(640)),
    ("event_apex_frame", np.zeros(0, np.int32)),  # fewer apexes than onsets
    ("event_onset_frame", np.array(1, np.int32)),  # 0-d
    ("valid", np.ones((6, 2), bool)),  # loads, then breaks the bake (broadcast error)
    ("timestamps_s", np.array(list("abcdef"))),  # loads, then breaks the bake (float conversion)
    # one-element arrays where one number belongs: numpy converted them with a DeprecationWarning
    ("fps", np.array([30.0])),
    ("version", np.array([2])),
    ("analysis_scale", np.array([[1.0]])),
    ("crop_size_px", np.array([256], np.int32)),
])
def test_a_take_with_a_member_of_the_wrong_kind_is_refused(take_bytes, tmp_path, member, value):
    import warnings

    arrays = take_members(take_bytes)
    arrays[member] = value
    np.savez(tmp_path / "take.npz", **arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # refused, not converted with a warning
        with pytest.raises(MxrError, match=member if value.size == 1 and value.ndim else None):
            load_take(tmp_path / "take.npz")


# -- 10 and 9 on the command line: `timeline` on bad takes -----------------------------------------
def npy_renamed(path: Path, _take: bytes) -> None:
    np.save(path.with_suffix(".npy"), np.zeros(3))
    path.with_suffix(".npy").rename(path)


def truncated(path: Path, take: bytes) -> None:
    path.write_bytes(take[: len(take) // 2])


def declares_ten_million_frames(path: Path, take: bytes) -> None:
    path.write_bytes(take)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["macro_mm.npy"] = npy_header((10**7, 478, 3), np.dtype("<f4"))  # 57 GB declared, the header alone
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)


def declares_a_long_take_in_a_few_kb(path: Path, take: bytes) -> None:
    """Every per-frame array's header says 150,000 frames (within the frame limit, 4.3 GB in all),
    the file holds the headers alone."""
    path.write_bytes(take)
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    frames = len(take_members(take)["valid"])
    for member, (shape, dtype) in declared_arrays(path).items():
        if shape and shape[0] == frames:
            members[f"{member}.npy"] = npy_header((150_000,) + shape[1:], dtype)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for member, content in members.items():
            archive.writestr(member, content)


def at_a_billionth_of_a_frame_per_second(path: Path, take: bytes) -> None:
    arrays = take_members(take)
    arrays["fps"] = np.array(1e-9)  # the timeline used to draw for half an hour
    np.savez(path, **arrays)


@pytest.mark.engine
@pytest.mark.parametrize("make, message", [
    (npy_renamed, "not a readable take file"),
    (truncated, "not a readable take file"),
    (declares_ten_million_frames, "declares 10000000 rows"),
    (declares_a_long_take_in_a_few_kb, "more than 64 times as much"),
    (at_a_billionth_of_a_frame_per_second, "frame rate"),
])
def test_timeline_refuses_a_bad_take_with_exit_2_and_touches_nothing(take_bytes, tmp_path, make, message):
    take = tmp_path / "take.npz"
    make(take, take_bytes)
    before = take.read_bytes()
    code, _, stderr = run_mxr("timeline", take, "--png", tmp_path / "timeline.png")
    assert_refused(code, stderr, message)
    assert take.read_bytes() == before and not (tmp_path / "timeline.png").exists()


@pytest.mark.engine
@pytest.mark.parametrize("picture", ["the take's own name", "a link to the take", "a hard link to the take"])
def test_timeline_refuses_to_draw_over_the_take_it_reads(take_bytes, tmp_path, picture):
    take = tmp_path / "take.png"  # a take may have any name; the picture must end in .png
    take.write_bytes(take_bytes)
    png = {"the take's own name": take, "a link to the take": tmp_path / "link.png",
           "a hard link to the take": tmp_path / "hard.png"}[picture]
    if picture == "a link to the take":
        png.symlink_to(take)
    elif picture == "a hard link to the take":
        os.link(take, png)
    code, _, stderr = run_mxr("timeline", take, "--png", png)
    assert_refused(code, stderr, "it is the take file")
    assert take.read_bytes() == take_bytes and png.read_bytes() == take_bytes


@pytest.mark.engine
def test_timeline_refuses_a_take_with_an_array_for_its_rate(take_bytes, tmp_path):
    arrays = take_members(take_bytes)
    arrays["fps"] = np.array([30.0, 30.0])
    np.savez(tmp_path / "take.npz", **arrays)
    code, _, stderr = run_mxr("timeline", tmp_path / "take.npz", "--png", tmp_path / "timeline.png")
    assert_refused(code, stderr)


# -- 9: refused within a stated memory bound --------------------------------------------------------
BOUNDED = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))  # 512 MiB of address space, numpy included
    from mxr.models.flame import FlameFileError, as_array, load_flame, read_flame_pickle
    from mxr.ops.errors import MxrError
    from mxr.ops.take import load_take
    try:
        if sys.argv[1].endswith(".npz"):
            load_take(sys.argv[1])
        elif sys.argv[2:] == ["load_flame"]:  # what Import FLAME Rig calls
            load_flame(sys.argv[1])
        else:
            as_array(read_flame_pickle(sys.argv[1])["v_template"])
    except MxrError as error:
        print("refused:", error)
""")


def write_sparse_bomb(path: Path) -> Path:
    """A FLAME pickle (under 1 kB) whose 'v_template' is a sparse matrix of three entries declaring
    (2**26, 3): densified, 1.6 GB (1.57 GB peak RSS in load_flame before it is refused)."""
    from flame_fixtures import FlamePickler, sparse_csc
    from mxr.models.flame import REQUIRED_KEYS

    sparse = sparse_csc(np.eye(3), python2=True)
    sparse.state["_shape"] = (2**26, 3)
    content = {key: np.zeros(1) for key in REQUIRED_KEYS}
    content["v_template"] = sparse
    with open(path, "wb") as handle:
        FlamePickler(handle, 2, True).dump(content)
    return path


@pytest.mark.parametrize("bomb", [
    "take declaring 57 GB",
    "take declaring 150,000 frames in a few kB",
    "pickle of a list doubled 40 times",
    "pickle of a sparse matrix declaring 1.6 GB",
])
def test_small_files_that_would_expand_are_refused_within_512_mib(take_bytes, tmp_path, bomb):
    if bomb.startswith("take"):
        path = tmp_path / "take.npz"
        (declares_a_long_take_in_a_few_kb if "150,000" in bomb else declares_ten_million_frames)(path, take_bytes)
    elif "sparse" in bomb:
        path = write_sparse_bomb(tmp_path / "sparse_bomb.pkl")
    else:
        from flame_fixtures import write_doubled_list_pickle

        path = write_doubled_list_pickle(tmp_path / "bomb.pkl")
    assert path.stat().st_size < 200_000
    loader = ["load_flame"] if "sparse" in bomb else []
    result = subprocess.run([sys.executable, "-c", BOUNDED, str(path), *loader], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stdout.startswith("refused:") and ("declares" in result.stdout or "too deep" in result.stdout)


# -- 3 and 6: the front-end cache -------------------------------------------------------------------
CACHE_END_FRAME = 24


@pytest.fixture(scope="module")
def cache_entry(tmp_path_factory):
    """(cache dir, entry folder, pristine copy of the entry) for the first 24 frames of single_face."""
    from mxr.ops.frontend import FrontendSettings
    from mxr.ops.frontend_cache import CachedFrontEnd
    from mxr.ops.progress import ProgressReporter
    from mxr.ops.sample_data import sample_path

    cache_dir = tmp_path_factory.mktemp("hostile_cache")
    frontend = CachedFrontEnd(sample_path("video/single_face.mp4"), FrontendSettings(end_frame=CACHE_END_FRAME),
                              ProgressReporter(io.StringIO()), cache_dir=cache_dir)
    assert len(list(frontend.records())) == CACHE_END_FRAME
    pristine = tmp_path_factory.mktemp("pristine") / frontend.key
    shutil.copytree(cache_dir / frontend.key, pristine)
    return cache_dir, cache_dir / frontend.key, pristine


def open_cached(cache_dir: Path):
    from mxr.ops.frontend import FrontendSettings
    from mxr.ops.frontend_cache import CachedFrontEnd
    from mxr.ops.progress import ProgressReporter
    from mxr.ops.sample_data import sample_path

    log = io.StringIO()
    frontend = CachedFrontEnd(sample_path("video/single_face.mp4"), FrontendSettings(end_frame=CACHE_END_FRAME),
                              ProgressReporter(log), cache_dir=cache_dir)
    return frontend, log


def restore(entry: Path, pristine: Path) -> None:
    shutil.rmtree(entry, ignore_errors=True)
    shutil.copytree(pristine, entry)


def fuzzed_manifest(text: str, rng: np.random.Generator) -> bytes:
    """The manifest with bits flipped, cut short, or one JSON value swapped for another type or number."""
    mode = int(rng.integers(3))
    if mode == 0:
        data = bytearray(text.encode())
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        return bytes(data)
    if mode == 1:
        return text.encode()[: int(rng.integers(len(text)))]
    manifest = json.loads(text)
    holders = [manifest] + [chunk for chunk in manifest["chunks"]]
    holder = holders[int(rng.integers(len(holders)))]
    key = sorted(holder)[int(rng.integers(len(holder)))]
    holder[key] = [None, -1, 0, 10**9, 0.5, float("nan"), "x", [], {}, True, "../../escape.npz"][int(rng.integers(11))]
    return json.dumps(manifest).encode()


@pytest.mark.engine
def test_fuzzed_cache_manifests_are_used_only_when_sound(cache_entry):
    """50 damaged manifests: never an exception; an entry is served only if every frame comes back
    sound, otherwise it is deleted with a warning (and rebuilt by the run)."""
    cache_dir, entry, pristine = cache_entry
    text = (pristine / "manifest.json").read_text()
    rng, served = np.random.default_rng(6), 0
    for case in range(50):
        restore(entry, pristine)
        (entry / "manifest.json").write_bytes(fuzzed_manifest(text, rng))
        frontend, log = open_cached(cache_dir)
        if frontend.hit:
            served += 1
            records = list(frontend.records())
            assert len(records) == CACHE_END_FRAME and all(r.landmarks_px.shape == (478, 3) for r in records), case
        else:
            assert "damaged" in log.getvalue() and not entry.exists(), case
    assert 0 < served < 40, served  # harmless damage (a path, a date) is served, the rest noticed
    restore(entry, pristine)
    frontend, _ = open_cached(cache_dir)
    assert frontend.hit


@pytest.mark.engine
def test_a_damaged_entry_is_rebuilt_by_the_run_that_finds_it(cache_entry):
    cache_dir, entry, pristine = cache_entry
    restore(entry, pristine)
    (entry / "manifest.json").write_text((pristine / "manifest.json").read_text().replace('"key": "', '"key": "0', 1))
    frontend, log = open_cached(cache_dir)
    assert not frontend.hit and "damaged" in log.getvalue()
    assert len(list(frontend.records())) == CACHE_END_FRAME
    assert open_cached(cache_dir)[0].hit  # rebuilt in place


@pytest.mark.engine
@pytest.mark.parametrize("field, damage", [("landmarks_px", "object"), ("valid", "int64")])
def test_a_checksum_consistent_chunk_of_the_wrong_dtype_is_rebuilt(cache_entry, field, damage):
    from mxr.ops.video import file_sha256

    cache_dir, entry, pristine = cache_entry
    restore(entry, pristine)
    manifest = json.loads((entry / "manifest.json").read_text())
    chunk = entry / manifest["chunks"][0]["file"]
    with np.load(chunk, allow_pickle=False) as data:
        arrays = dict(data)
    arrays[field] = arrays[field].astype(object) if damage == "object" else arrays[field].astype(np.int64) * 7
    np.savez(chunk, **arrays)
    manifest["chunks"][0]["sha256"] = file_sha256(chunk)
    (entry / "manifest.json").write_text(json.dumps(manifest))
    try:
        frontend, log = open_cached(cache_dir)
        assert not frontend.hit and "damaged" in log.getvalue()
    finally:
        restore(entry, pristine)


def rewrite_chunk(entry: Path, damage: str) -> None:
    """Damage the entry's first chunk as ``damage`` says, then make its checksum agree again."""
    from mxr.ops.video import file_sha256

    manifest = json.loads((entry / "manifest.json").read_text())
    chunk = entry / manifest["chunks"][0]["file"]
    if damage == "a flipped data byte (bad CRC)":
        data = bytearray(chunk.read_bytes())
        with zipfile.ZipFile(chunk) as archive:
            info = archive.getinfo("landmarks_px.npy")
        data[info.header_offset + 30 + len(info.filename) + len(info.extra) + 500] ^= 0xFF
        chunk.write_bytes(bytes(data))
    else:
        with np.load(chunk, allow_pickle=False) as loaded:
            arrays = dict(loaded)
        valid = np.flatnonzero(arrays["valid"])
        if damage == "NaN landmarks on a frame with a face":
            arrays["landmarks_px"][valid[3], 10] = np.nan
        elif damage == "an infinite crop on a frame with a face":
            arrays["crop_from_image"][valid[0], 0, 0] = np.inf
        elif damage == "frame numbers out of order":
            arrays["index"][[2, 3]] = arrays["index"][[3, 2]]
        elif damage == "a member the front-end never writes":
            arrays["payload"] = np.zeros((4, 4))
        if damage == "compressed, with a broken stream":
            np.savez_compressed(chunk, **arrays)
            data = bytearray(chunk.read_bytes())
            with zipfile.ZipFile(chunk) as archive:
                info = archive.getinfo("landmarks_px.npy")
            start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 100
            data[start:start + 64] = bytes(64)
            chunk.write_bytes(bytes(data))
        else:
            np.savez(chunk, **arrays)
    manifest["chunks"][0]["sha256"] = file_sha256(chunk)
    (entry / "manifest.json").write_text(json.dumps(manifest))


CHUNK_DAMAGE = ["a flipped data byte (bad CRC)", "compressed, with a broken stream", "NaN landmarks on a frame with a face",
                "an infinite crop on a frame with a face", "frame numbers out of order",
                "a member the front-end never writes"]


@pytest.mark.engine
@pytest.mark.parametrize("damage", CHUNK_DAMAGE)
def test_a_checksum_consistent_chunk_the_front_end_never_wrote_is_rebuilt(cache_entry, damage):
    """The checksums only say the bytes are those written: a chunk that cannot be read whole, or
    holds what the front-end never gives, is noticed when the entry is opened (used to crash every
    run with zipfile's 'Bad CRC-32', or hand NaN faces on), deleted, and rebuilt."""
    cache_dir, entry, pristine = cache_entry
    restore(entry, pristine)
    rewrite_chunk(entry, damage)
    try:
        frontend, log = open_cached(cache_dir)
        assert not frontend.hit and "damaged" in log.getvalue() and not entry.exists()
    finally:
        restore(entry, pristine)


@pytest.mark.engine
def test_an_entry_damaged_while_it_is_read_stops_the_run_clearly_and_is_deleted(cache_entry):
    cache_dir, entry, pristine = cache_entry
    restore(entry, pristine)
    frontend, _ = open_cached(cache_dir)
    assert frontend.hit
    rewrite_chunk(entry, "a flipped data byte (bad CRC)")  # after the entry was checked and opened
    try:
        with pytest.raises(MxrError, match="changed while it was read.*run again"):
            list(frontend.records())
        assert not entry.exists()
    finally:
        restore(entry, pristine)


# -- 2 and 8: the engine's outputs -------------------------------------------------------------------
@pytest.mark.engine
def test_an_output_hard_linked_to_the_video_is_refused(tmp_path):
    from mxr.ops.sample_data import sample_path

    video = tmp_path / "clip.mp4"
    shutil.copy(sample_path("video/single_face.mp4"), video)
    original = video.read_bytes()
    os.link(video, tmp_path / "take.npz")
    code, stdout, stderr = run_mxr("reconstruct", video, "--out", tmp_path / "take.npz", "--baseline")
    assert_refused(code, stderr, "it is the input video")
    assert video.read_bytes() == original and '"progress"' not in stdout  # refused before decoding


KILLED_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    from mxr.ops.atomic import replacing
    with replacing(sys.argv[1]) as stream:
        stream.write(b"half a take")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
""")


@pytest.mark.engine
def test_what_a_writer_killed_while_saving_left_is_swept_by_the_next_run(tmp_path):
    from mxr.ops.sample_data import sample_path

    take = tmp_path / "take.npz"
    take.write_bytes(b"an earlier take")
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_SAVING, str(take)], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob("take.npz.*.partial"))
    assert len(leftovers) == 1 and take.read_bytes() == b"an earlier take"  # the kill left the take whole
    live = tmp_path / f"take.npz.{os.getpid()}-live.partial"  # a writer still running (this process)
    live.write_bytes(b"being written")
    code, _, stderr = run_mxr("reconstruct", sample_path("video/single_face.mp4"), "--out", take,
                              "--end-frame", CACHE_END_FRAME, "--baseline")
    assert code == 0, stderr[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["take.npz", live.name])
    assert load_take(take).frame_count == CACHE_END_FRAME


@pytest.mark.engine
@pytest.mark.parametrize("seconds", ["nan", "inf", "-1"])
def test_a_neutral_span_that_is_not_a_positive_number_is_refused(tmp_path, seconds):
    from mxr.ops.sample_data import sample_path

    code, _, stderr = run_mxr("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz",
                              "--end-frame", CACHE_END_FRAME, "--baseline", "--neutral-seconds", seconds)
    assert_refused(code, stderr, "positive number of seconds")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.engine
def test_a_neutral_span_of_1e308_seconds_is_refused(tmp_path):
    from mxr.ops.sample_data import sample_path

    code, _, stderr = run_mxr("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz",
                              "--end-frame", CACHE_END_FRAME, "--baseline", "--neutral-seconds", "1e308")
    assert_refused(code, stderr)
    assert not (tmp_path / "t.npz").exists()


@pytest.mark.engine
@pytest.mark.parametrize("focal, message", [("nan", "positive number of pixels"), ("-800", "positive number of pixels"),
                                            ("35", "not one a camera filming 640x360 frames has"),
                                            ("1e308", "not one a camera filming 640x360 frames has")])
def test_a_focal_length_no_camera_has_is_refused(tmp_path, focal, message):
    from mxr.ops.sample_data import sample_path

    code, _, stderr = run_mxr("reconstruct", sample_path("video/single_face.mp4"), "--out", tmp_path / "t.npz",
                              "--end-frame", CACHE_END_FRAME, "--baseline", "--focal-px", focal)
    assert_refused(code, stderr, message)
    assert list(tmp_path.iterdir()) == []


# -- 1 and 10: FLAME files and their landmark registration -------------------------------------------
@pytest.fixture(scope="module")
def flame_arrays():
    from flame_fixtures import random_flame_arrays

    return random_flame_arrays(seed=5)


@pytest.mark.parametrize("key", ["v_template", "shapedirs", "weights"])
def test_a_flame_file_with_nan_values_is_refused(flame_arrays, tmp_path, key):
    from flame_fixtures import write_flame_pickle
    from mxr.models.flame import FlameFileError, load_flame

    arrays = dict(flame_arrays)
    arrays[key] = arrays[key].astype(np.float64)
    arrays[key].flat[7] = np.nan
    with pytest.raises(FlameFileError):
        load_flame(write_flame_pickle(tmp_path / "generic_model.pkl", arrays, "2023"))


@pytest.mark.parametrize("damage", ["negative triangles", "triangles past the vertices", "too few landmarks",
                                    "NaN weights", "not an npz"])
def test_a_bad_landmark_registration_is_refused_when_read(flame_arrays, tmp_path, damage):
    from flame_fixtures import write_flame_pickle, write_synthetic_registration
    from mxr.models.correspondence import LandmarkEmbedding
    from mxr.models.flame import FlameFileError, load_flame
    from mxr.models.flame_embedding import load_landmark_embedding, save_landmark_embedding

    model = load_flame(write_flame_pickle(tmp_path / "generic_model.pkl", flame_arrays, "2023"))
    path = write_synthetic_registration(tmp_path / "registration.npz", model)
    good = load_landmark_embedding(path, model.vertex_count)
    triangles, weights = good.triangles.copy(), good.barycentric.copy()
    if damage == "negative triangles":
        triangles[:] = -1
    elif damage == "triangles past the vertices":
        triangles[:] = model.vertex_count + 10**6
    elif damage == "too few landmarks":
        triangles, weights = triangles[:10], weights[:10]
    elif damage == "NaN weights":
        weights[:] = np.nan
    if damage == "not an npz":
        path.write_text("not a registration")
    else:
        save_landmark_embedding(path, LandmarkEmbedding(triangles, weights), model.vertex_count,
                                np.ones(len(triangles), bool))
    with pytest.raises(FlameFileError):
        load_landmark_embedding(path, model.vertex_count)


# -- 4 and 5: a bake is all or nothing (real bpy) -----------------------------------------------------
def scene_state():
    import bpy

    scene = bpy.context.scene
    return (sorted(o.name for o in bpy.data.objects), sorted(a.name for a in bpy.data.actions),
            len(bpy.data.meshes), len(bpy.data.cameras), scene.frame_start, scene.frame_end, scene.render.fps,
            len(scene.timeline_markers))


def bake_refused(path: Path) -> str:
    """The ERROR report of Bake Take on ``path`` (bpy.ops raises it as RuntimeError)."""
    import bpy

    with pytest.raises(RuntimeError) as refused:
        bpy.ops.mxr.bake_take(filepath=str(path))
    return str(refused.value)


def saved_take_arrays(tmp_path: Path, frames: int = 10) -> dict[str, np.ndarray]:
    from conftest import synthetic_take
    from mxr.models.open_head import load_open_head

    save_take(synthetic_take(load_open_head(), frames=frames, invalid=()), tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz", allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


@pytest.mark.parametrize("breakage", ["every head rotation NaN", "every value 1e30"])
def test_a_take_that_loads_but_cannot_be_keyed_leaves_the_earlier_bake(empty_blend, tmp_path, breakage):
    import bpy

    arrays = saved_take_arrays(tmp_path)
    assert bpy.ops.mxr.bake_take(filepath=str(tmp_path / "good.npz")) == {"FINISHED"}
    if breakage == "every head rotation NaN":
        arrays["head_rotation"] = np.full_like(arrays["head_rotation"], np.nan)
    else:
        for name in ("macro_mm", "micro_mm", "detail_mm"):
            arrays[name] = np.full_like(arrays[name], 1e30)
    np.savez(tmp_path / "bad.npz", **arrays)
    before = scene_state()
    report = bake_refused(tmp_path / "bad.npz")
    assert "Traceback" not in report and "nothing to bake" in report
    assert scene_state() == before


@pytest.mark.parametrize("member, value", [
    ("timestamps_s", np.arange(10) * 1e12),  # increasing and finite: 1e13 s of take
    ("valid", np.ones((10, 2), bool)),
    ("timestamps_s", np.array(list("abcdefghij"))),
    ("settings_json", np.array("[1]")),
])
def test_a_take_the_bake_cannot_read_is_an_error_report_and_changes_nothing(empty_blend, tmp_path, member, value):
    arrays = saved_take_arrays(tmp_path)
    arrays[member] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    before = scene_state()
    try:
        report = bake_refused(tmp_path / "bad.npz")
        assert "Traceback" not in report
    finally:
        assert scene_state() == before
