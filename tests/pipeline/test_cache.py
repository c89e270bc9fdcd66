"""The artifact cache: content-addressed keys, atomic writes, corrupted artifacts never used."""

import dataclasses
import hashlib
import os
import re

import numpy as np
import pytest

from pipeline import registry
from pipeline.cache import Cache, artifact_ok, atomic_write, file_digest, item_key

from .conftest import run_stages

BASE = dict(stage="s", version="1", params={"a": 1, "b": (1, 2)}, input_keys=["k1", "k2"], file_hash="f")


def _key(**change):
    kw = dict(BASE, **change)
    return item_key(kw.pop("stage"), kw.pop("version"), kw.pop("params"), kw.pop("input_keys"),
                    kw.pop("file_hash"), **kw)


def test_key_is_a_32_hex_digest_that_depends_on_every_part():
    key = _key()
    assert re.fullmatch(r"[0-9a-f]{32}", key) and key == _key()
    changed = [
        _key(stage="t"),
        _key(version="2"),
        _key(params={"a": 2, "b": (1, 2)}),
        _key(params={"a": 1, "b": (2, 1)}),
        _key(params={"a": 1}),
        _key(input_keys=["k2", "k1"]),  # the order of the inputs is part of the key
        _key(input_keys=["k1"]),
        _key(file_hash=None),
        _key(file_hash="g"),
        _key(extra={"model": "m1"}),
    ]
    assert len(set(changed + [key])) == len(changed) + 1
    assert _key(extra={"model": "m1"}) != _key(extra={"model": "m2"})


def test_key_ignores_what_does_not_change_the_result():
    # Parameter order, tuples versus lists (TOML gives lists), an empty extra.
    assert _key(params={"b": (1, 2), "a": 1}) == _key()
    assert _key(params={"a": 1, "b": [1, 2]}) == _key()
    assert _key(extra={}) == _key() and _key(extra=None) == _key()
    nested = {"d": {"y": (1,), "x": 2}}
    assert _key(params=nested) == _key(params={"d": {"x": 2, "y": [1]}})
    assert _key(input_keys=[("a", "b")]) == _key(input_keys=[["a", "b"]])
    assert _key(extra={"p": "1", "q": "2"}) == _key(extra={"q": "2", "p": "1"})


def test_keys_are_stable_across_releases():
    # An output folder's cache stays valid after an upgrade only if the key of an unchanged item
    # is unchanged: these two keys are pinned (a change to the key's format must be deliberate,
    # and it recomputes every user's cache).
    assert _key() == "7342b9fed37d103b8b2c24278f11d20e"
    assert _key(extra={"model": "m1"}) == "48a21a026c19180a1bd212ef18fa1296"


def test_parameters_json_cannot_write_are_keyed_by_their_text(tmp_path):
    # A path parameter (not a JSON type) is keyed by its str: the same path, the same key.
    assert _key(params={"model": tmp_path / "m.npz"}) == _key(params={"model": str(tmp_path / "m.npz")})


def test_file_digest_is_the_sha256_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 10
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    expected = hashlib.sha256(data).hexdigest()
    assert file_digest(path) == expected
    assert file_digest(path, chunk=7) == expected  # read in chunks: same digest


def test_atomic_write_replaces_the_target_only_when_the_writer_finishes(tmp_path):
    target = tmp_path / "a" / "b.bin"
    atomic_write(target, lambda fh: fh.write(b"old"))
    assert target.read_bytes() == b"old"

    def failing(fh):
        fh.write(b"partial new content")
        fh.flush()
        # While the writer runs, the target still holds the old artifact (a temporary sibling is
        # being written, not the target itself).
        assert target.read_bytes() == b"old"
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert os.listdir(target.parent) == ["b.bin"]  # no partial or temporary file left

    def interrupted(fh):
        fh.write(b"x")
        raise KeyboardInterrupt  # not an Exception: still cleaned up

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "new.bin", interrupted)
    assert not (tmp_path / "new.bin").exists()
    assert sorted(os.listdir(tmp_path)) == ["a"]

    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    assert os.listdir(target.parent) == ["b.bin"]


def test_atomic_write_gives_the_umask_mode(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    atomic_write(tmp_path / "m.bin", lambda fh: fh.write(b"x"))
    assert (tmp_path / "m.bin").stat().st_mode & 0o777 == 0o666 & ~mask


def test_the_mode_is_read_from_the_umask_and_the_umask_is_kept():
    from pipeline.cache import _umask_file_mode

    old = os.umask(0o027)
    try:
        assert _umask_file_mode() == 0o640
        assert os.umask(0o002) == 0o027  # reading it left the process's umask as it was
        assert _umask_file_mode() == 0o664
    finally:
        os.umask(old)


def test_atomic_write_makes_missing_folders_and_writes_a_hidden_sibling(tmp_path):
    target = tmp_path / "x" / "y" / "z.bin"
    seen = []

    def writer(fh):
        seen.extend(os.listdir(target.parent))
        fh.write(b"data")

    atomic_write(target, writer)  # "x" and "y" did not exist
    assert target.read_bytes() == b"data"
    # While it is written, the artifact is a hidden temporary file in the target's own folder
    # (so the rename is atomic, and a leftover is recognisable: ".z.bin.<random>.tmp").
    assert len(seen) == 1 and re.fullmatch(r"\.z\.bin\..+\.tmp", seen[0]), seen


def test_save_load_has_and_corruption(tmp_path):
    cache = Cache(tmp_path)
    assert cache.root == tmp_path / ".cache"
    assert not cache.has("st", "k")
    path = cache.save("st", "k", {"x": np.arange(3), "y": 2.5})
    assert path == tmp_path / ".cache" / "st" / "k.npz" and cache.path("st", "k") == path
    assert cache.has("st", "k") and artifact_ok(path)
    got = cache.load("st", "k")
    assert sorted(got) == ["x", "y"] and got["x"].tolist() == [0, 1, 2] and float(got["y"]) == 2.5
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    assert not artifact_ok(path)
    assert not cache.has("st", "k") and not path.exists()  # reported absent and removed
    path.write_bytes(b"not a zip")
    assert not cache.has("st", "k") and not path.exists()
    with pytest.raises(TypeError, match=r"stage st: result 'o' is an object array; return plain arrays"):
        cache.save("st", "k2", {"o": np.array([{}, 1], dtype=object)})
    assert not cache.path("st", "k2").exists()


def test_a_crc_failure_is_a_corrupted_artifact(tmp_path):
    cache = Cache(tmp_path)
    path = cache.save("st", "k", {"x": np.arange(1000)})
    raw = bytearray(path.read_bytes())
    i = raw.index(b"x.npy") + 200  # inside the member's data
    raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))
    assert not artifact_ok(path)
    assert not cache.has("st", "k")
    assert not artifact_ok(tmp_path / "missing.npz")


def test_entries_and_clear(tmp_path):
    cache = Cache(tmp_path)
    assert cache.entries() == {}
    with pytest.raises(KeyError, match=r"no cached stage 'a' in .* \(it holds: nothing\)"):
        cache.clear(["a"])
    a1 = cache.save("a", "1", {"x": np.zeros(5)})
    a2 = cache.save("a", "2", {"x": np.ones(50)})
    b1 = cache.save("b", "1", {"x": np.zeros(2)})
    (cache.root / "a" / "notes.txt").write_text("not an artifact")
    (cache.root / "stray.txt").write_text("not a stage")
    assert cache.entries() == {"a": (2, a1.stat().st_size + a2.stat().st_size), "b": (1, b1.stat().st_size)}
    with pytest.raises(KeyError, match=r"no cached stage 'zz', 'yy' in .* \(it holds: a, b\)"):
        cache.clear(["zz", "b", "yy"])
    assert b1.exists()
    assert cache.clear(["a"]) == 2
    assert not (cache.root / "a").exists() and b1.exists()
    cache.save("c", "1", {"x": np.zeros(1)})
    assert cache.clear() == 2
    assert cache.entries() == {}


def test_bumping_a_stage_version_recomputes_it_and_its_dependants(tiny_pool, tmp_path, monkeypatch):
    names = ["test_after", "test_count", "test_slow"]
    out = tmp_path / "out"
    run_stages(names, out, pool=tiny_pool)
    again, _, _ = run_stages(names, out, pool=tiny_pool)
    assert again["test_mean"].computed == 0
    bumped = dataclasses.replace(registry.get("test_mean"), version="2")
    monkeypatch.setitem(registry._REGISTRY, "test_mean", bumped)
    after, _, _ = run_stages(names, out, pool=tiny_pool)
    computed = {n: s.computed for n, s in after.items()}
    assert computed == {"pool": 0, "test_mean": 4, "test_after": 4, "test_count": 1, "test_slow": 0}


def test_load_never_unpickles_an_artifact(tmp_path):
    # A cache file is data, not code: one holding a pickled object array (written by something
    # else than Cache.save) is refused instead of being unpickled.
    cache = Cache(tmp_path)
    path = cache.path("st", "k")
    path.parent.mkdir(parents=True)
    np.savez(path, o=np.array([{"a": 1}, 2], dtype=object))
    with pytest.raises(ValueError, match="allow_pickle"):
        cache.load("st", "k")
