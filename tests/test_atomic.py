"""The one atomic writer: all or nothing, temp file removed on failure, group-readable."""

import json
import os
import stat

import numpy as np
import pytest

from minicnn.atomic import atomic_open, write_json, write_text
from minicnn.net import atomic_savez


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"map": 0.5})
    with pytest.raises(RuntimeError, match="killed"), atomic_open(path, "w") as f:
        f.write('{"map": 0.')
        raise RuntimeError("killed halfway")
    assert json.loads(path.read_text()) == {"map": 0.5}
    assert sorted(os.listdir(tmp_path)) == ["summary.json"]


def test_written_files_are_group_readable_and_complete(tmp_path):
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x\n")
        atomic_savez(tmp_path / "w.npz", {"a": np.arange(3)})
        write_json(tmp_path / "r.json", {"v": np.float32(1.5), "a": np.arange(2)})
    finally:
        os.umask(old)
    for name in ("a.txt", "w.npz", "r.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    assert json.loads((tmp_path / "r.json").read_text()) == {"v": 1.5, "a": [0, 1]}
    assert np.load(tmp_path / "w.npz")["a"].tolist() == [0, 1, 2]
