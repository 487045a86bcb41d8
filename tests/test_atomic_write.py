"""perceptual_sr/utils/atomic_write.py: a kill or an error mid-write leaves the old file or folder, never half."""

import json
import os
import stat

import pytest

from perceptual_sr.utils.atomic_write import atomic_file, atomic_folder, recover_folder, write_json, write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "settings.json"
    write_json(path, {"version": 1})
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_file(path) as staging:
            staging.write_text('{"version": 2, "trunc')
            raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"version": 1}
    assert [child.name for child in tmp_path.iterdir()] == ["settings.json"]


def test_new_files_get_the_permissions_of_a_plain_open_not_0600(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under this process's umask
    write_text(tmp_path / "atomic.txt", "x")
    write_json(tmp_path / "nested" / "atomic.json", [1, 2])  # parent folders are created
    # tempfile.mkstemp would give 0600: a saved model others cannot read.
    assert _mode(tmp_path / "atomic.txt") == _mode(plain) == _mode(tmp_path / "nested" / "atomic.json")


def test_write_text_and_json_replace_the_content(tmp_path):
    write_text(tmp_path / "a.txt", "old")
    write_text(tmp_path / "a.txt", "new")
    write_json(tmp_path / "b.json", {"x": [1, 2]}, indent=None)
    assert (tmp_path / "a.txt").read_text() == "new"
    assert (tmp_path / "b.json").read_text() == '{"x": [1, 2]}'


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "model"
    with atomic_folder(folder) as staging:
        (staging / "weights.bin").write_bytes(b"v1")
    with pytest.raises(RuntimeError):
        with atomic_folder(folder) as staging:
            (staging / "weights.bin").write_bytes(b"v2, half")
            raise RuntimeError("killed")
    assert (folder / "weights.bin").read_bytes() == b"v1"
    with atomic_folder(folder) as staging:
        (staging / "other.bin").write_bytes(b"v3")
    assert sorted(child.name for child in folder.iterdir()) == ["other.bin"]  # nothing of the old one left
    assert sorted(child.name for child in tmp_path.iterdir()) == ["model"]


def test_recover_folder_puts_back_a_folder_parked_by_a_kill(tmp_path):
    folder = tmp_path / "model"
    (tmp_path / "model.old").mkdir()
    (tmp_path / "model.old" / "weights.bin").write_bytes(b"v1")
    (tmp_path / "model.tmp").mkdir()  # a staging folder is never complete
    recover_folder(folder)
    assert (folder / "weights.bin").read_bytes() == b"v1"
    assert sorted(child.name for child in tmp_path.iterdir()) == ["model"]
