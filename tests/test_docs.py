"""The docs say what the code does (issue 23): the configuration reference is generated from
``emrchatops.domain.reference`` and held to the settings' own definitions."""

from __future__ import annotations

import re
from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from emrchatops.domain import reference, settings
from emrchatops.domain.settings import Settings, TagSelector

ROOT = Path(__file__).resolve().parent.parent


def shown(value: object) -> str:
    """A Settings default as the reference's *default* column writes it."""
    if value is None:
        return "none"
    if isinstance(value, time):
        return f"`{value:%H:%M}`"
    if isinstance(value, ZoneInfo):
        return f"`{value.key}`"
    if isinstance(value, TagSelector | str):
        return f"`{value}`"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# -- the configuration reference ------------------------------------------------------------------------


def test_the_configuration_reference_is_up_to_date() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8") == reference.render(), (
        "docs/configuration.md is stale: run `make docs` "
        "(PYTHONPATH=plugins/emr python -m emrchatops.domain.reference) and commit it"
    )


def test_check_mode_fails_on_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "configuration.md"
    assert reference.main(["--check", "--out", str(out)]) == 1
    assert reference.main(["--out", str(out)]) == 0
    assert reference.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text().replace("`EMR_IDLE_MINUTES` | 30", "`EMR_IDLE_MINUTES` | 31"))
    assert reference.main(["--check", "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_every_key_the_settings_accept_is_in_the_reference_and_no_other() -> None:
    assert [key.name for key in reference.EMR_KEYS] == list(settings.KEYS)


def test_every_plain_default_is_the_settings_dataclass_default() -> None:
    fields = Settings.__dataclass_fields__
    plain = [key for key in reference.EMR_KEYS if key.field is not None]
    assert len(plain) >= 20
    for key in plain:
        assert key.field in fields, key.name
        assert shown(fields[key.field].default) == key.default, key.name


def test_the_off_words_are_the_settings_off_words() -> None:
    written = set(re.findall(r"`(\w+)`", reference.OFF)) | ({""} if "empty" in reference.OFF else set())
    assert written == settings.OFF_WORDS


def test_every_variable_config_py_reads_is_in_the_reference_and_no_other() -> None:
    source = (ROOT / "config.py").read_text(encoding="utf-8")
    read = set(re.findall(r"""(?:_env|_flag|os\.environ\.get)\(\s*["']([A-Z_]+)["']""", source))
    read |= set(re.findall(r"""os\.environ\[["']([A-Z_]+)["']\]""", source))
    assert read, "config.py's variables were not found"
    assert {key.name for key in reference.PROCESS_KEYS} == read
