"""medcorpus.files: atomic writes leave the old file or the new one, never a part; one cache root."""
from __future__ import annotations

from pathlib import Path

import pytest

from medcorpus.files import atomic_path, atomic_write, cache_root


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.bin"
    atomic_write(target, b"one")
    atomic_write(target, lambda f: f.write(b"two"))
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.bin"]


def test_atomic_write_failure_keeps_old_content(tmp_path: Path) -> None:
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")

    def boom(f) -> None:
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]


def test_atomic_path_keeps_extension_and_hides_temp(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "x.csv") as tmp:
        assert Path(tmp).name.startswith(".") and tmp.endswith(".csv")
        Path(tmp).write_text("a\n")
    assert (tmp_path / "x.csv").read_text() == "a\n"


def test_cache_root_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MEDCORPUS_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("MEDCORPUS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "medcorpus"
