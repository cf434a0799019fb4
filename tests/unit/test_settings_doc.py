"""The README's settings table is the one `inspection.tools.settings_doc` generates from `Settings`."""

from __future__ import annotations

from pathlib import Path

from inspection.config import Settings, load_settings
from inspection.tools.settings_doc import BEGIN, END, settings_rows, with_table

REPO = Path(__file__).resolve().parents[2]


def test_the_readme_settings_table_is_current() -> None:
    readme = (REPO / "README.md").read_text()
    assert BEGIN in readme and END in readme
    assert with_table(readme) == readme, "run: python -m inspection.tools.settings_doc --write README.md"


def test_every_row_names_a_setting_its_environment_variable_sets() -> None:
    rows = settings_rows()
    sections = {name for name, field in Settings.model_fields.items()}
    assert {key.split(".")[0] for key, *_ in rows} == sections
    key, env, default, _ = next(row for row in rows if row[0] == "kafka.partitions")
    assert env == "INSPECTION__KAFKA__PARTITIONS" and default == "12"
    assert load_settings(environ={env: "6"}).kafka.partitions == 6


def test_the_machine_settings_are_rows_too_and_read_from_the_environment(monkeypatch, tmp_path) -> None:
    from inspection.detect.base import model_cache_dir
    from inspection.tools.settings_doc import machine_rows

    assert [(key, env) for key, env, *_ in machine_rows()] == [("(machine) model_dir", "INSPECTION_MODEL_DIR")]
    monkeypatch.setenv("INSPECTION_MODEL_DIR", str(tmp_path))
    assert model_cache_dir() == tmp_path
    monkeypatch.setenv("INSPECTION_MODEL_DIR", "")  # empty: as if unset
    assert model_cache_dir().name == "models" and model_cache_dir() != tmp_path
