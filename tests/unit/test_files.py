"""Whole-or-absent files: a write that fails leaves the previous content and no stray file."""

from __future__ import annotations

import json

import pytest

from atomml.files import concatenate, replacing, write_json, write_text


def test_failed_write_keeps_the_previous_version(tmp_path):
    path = write_text(tmp_path / "state.json", "old")
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_writes_and_concatenation(tmp_path):
    write_json(tmp_path / "a.json", {"x": 1})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    parts = [write_text(tmp_path / f"{k}.xyz", f"frame {k}\n") for k in range(3)]
    concatenate(parts, tmp_path / "all.xyz")
    assert (tmp_path / "all.xyz").read_text() == "frame 0\nframe 1\nframe 2\n"
    assert not list(tmp_path.glob("*.tmp*"))
