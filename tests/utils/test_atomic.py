"""evomerge.io.atomic: no temporary left on any error, old output intact, modes follow the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from evomerge.io import atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text


def _names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def test_write_replaces_and_reads_back(tmp_path):
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second, longer")
    assert path.read_bytes() == b"second, longer"
    atomic_write_text(tmp_path / "t.txt", "héllo\n")
    assert (tmp_path / "t.txt").read_bytes() == "héllo\n".encode()
    atomic_write_json(tmp_path / "j.json", {"b": 1, "a": [1.5]}, indent=2, sort_keys=True)
    assert (tmp_path / "j.json").read_text() == '{\n  "a": [\n    1.5\n  ],\n  "b": 1\n}'
    assert _names(tmp_path) == ["a.bin", "j.json", "t.txt"]


@pytest.mark.parametrize("error", [RuntimeError("disk on fire"), KeyboardInterrupt()])
def test_error_mid_write_leaves_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "state.json"
    atomic_write_text(path, "old")

    def fail():
        assert len(list(tmp_path.glob(".state.json.tmp-*"))) == 1  # half written, not yet in place
        raise error

    with pytest.raises(type(error)):
        atomic_write_bytes(path, b"new contents", midway=fail)
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["state.json"]


def test_unserialisable_json_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert _names(tmp_path) == []


def test_file_mode_follows_umask(tmp_path, umask_027):
    atomic_write_text(tmp_path / "f", "x")
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640  # 0o666 & ~0o027, not mkstemp's 0o600


def test_dir_mode_follows_umask(tmp_path, umask_027):
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "w").write_text("1")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o750  # 0o777 & ~0o027, not mkdtemp's 0o700


def test_dir_is_put_in_place_and_replaces_old(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.tmp-") and _names(tmp) == []
        (tmp / "sub").mkdir()
        (tmp / "sub" / "a").write_text("A1")
    assert (out / "sub" / "a").read_text() == "A1"
    with atomic_dir(out) as tmp:
        (tmp / "b").write_text("B2")
    assert _names(out) == ["b"] and (out / "b").read_text() == "B2"
    assert _names(tmp_path) == ["out"]  # neither the temporary nor the old copy is left


def test_dir_keeps_old_output_until_new_is_in_place(tmp_path, monkeypatch):
    """The swap renames old aside, new in, then removes old: at every rename one complete output exists."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "v").write_text("old")
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append((os.path.basename(src), os.path.basename(dst), sorted(os.listdir(tmp_path))))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with atomic_dir(out) as tmp:
        (tmp / "v").write_text("new")
        assert (out / "v").read_text() == "old"  # untouched while the new one is written
    (aside_src, aside_dst, _), (new_src, new_dst, before_new) = seen
    assert aside_src == "out" and aside_dst.startswith(".out.old-")
    assert new_src.startswith(".out.tmp-") and new_dst == "out"
    assert aside_dst in before_new  # the old output still existed, aside, when the new one moved in
    assert (out / "v").read_text() == "new" and _names(tmp_path) == ["out"]


@pytest.mark.parametrize("error", [RuntimeError("merge failed"), KeyboardInterrupt()])
def test_dir_error_keeps_old_output_and_removes_temporary(tmp_path, error):
    out = tmp_path / "out"
    out.mkdir()
    (out / "v").write_text("old")
    with pytest.raises(type(error)):
        with atomic_dir(out) as tmp:
            (tmp / "v").write_text("half")
            raise error
    assert _names(tmp_path) == ["out"] and (out / "v").read_text() == "old"


def test_dir_failed_swap_moves_old_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "v").write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if os.path.basename(str(src)).startswith(".out.tmp-"):
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="No space left"):
        with atomic_dir(out) as tmp:
            (tmp / "v").write_text("new")
    assert _names(tmp_path) == ["out"] and (out / "v").read_text() == "old"


def test_dir_replaces_a_file(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    with atomic_dir(out) as tmp:
        (tmp / "v").write_text("dir")
    assert (out / "v").read_text() == "dir" and _names(tmp_path) == ["out"]


def test_kill_midway_leaves_old_file_and_a_recognisable_temporary(tmp_path):
    """A SIGKILL-like exit half-way: the old file is intact; the leftover is a hidden ``.tmp-`` sibling."""
    path = tmp_path / "ckpt.pkl"
    path.write_bytes(b"old")
    script = textwrap.dedent(
        f"""
        import os
        from evomerge.io import atomic_write_bytes
        atomic_write_bytes({str(path)!r}, b"x" * 1000, midway=lambda: os._exit(137))
        """
    )
    assert subprocess.run([sys.executable, "-c", script]).returncode == 137
    assert path.read_bytes() == b"old"
    (left,) = [n for n in _names(tmp_path) if n != "ckpt.pkl"]
    assert left.startswith(".ckpt.pkl.tmp-") and (tmp_path / left).stat().st_size == 500
