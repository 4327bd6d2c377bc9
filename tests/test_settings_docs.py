"""The settings reference page is generated from the code, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from prodloop.settings import Settings, settings_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_settings_page_is_current() -> None:
    assert DOC.read_text() == settings_markdown(), "run `prodloop settings --markdown > docs/settings.md`"


def test_every_setting_has_help_text() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"
