import json

import pytest

from hf_toponets.core.files import write_json_atomic, write_text_atomic


def test_json_round_trip_and_no_leftovers(tmp_path):
    data = {"overall": 0.5, "paradigms": {"a": {"accuracy": 1.0, "n": 3}}}
    path = write_json_atomic(tmp_path / "r.json", data)
    assert json.loads(path.read_text()) == data
    write_json_atomic(path, {"overall": 0.25})  # replaces, never appends
    assert json.loads(path.read_text()) == {"overall": 0.25}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "card.md", "old")
    with pytest.raises(TypeError):
        write_json_atomic(path, {"not json": object()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]
