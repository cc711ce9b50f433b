"""Russian is complete: every translatable string in code and templates has a translation."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [
    "clinic",
    "patients",
    "scheduling",
    "desk",
    "telephony",
    "billing",
    "lab",
    "integrations",
    "devices",
    "portal",
    "messaging",
    "templates",
]


@pytest.fixture(scope="module")
def regenerated_catalog(tmp_path_factory: pytest.TempPathFactory) -> polib.POFile:
    """Run makemessages on a copy of the sources, merging the committed catalogue into it."""
    if shutil.which("xgettext") is None:
        pytest.skip("GNU gettext is not installed (python3 dev.py test installs it)")
    copy = tmp_path_factory.mktemp("i18n")
    for name in SOURCE_DIRS:
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "manage.py", copy / "manage.py")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "clinic.settings.test",
        "PYTHONPATH": str(copy),
        # Join the running embedded servers instead of starting new ones inside the copy.
        "CLINIC_VAR_DIR": os.environ.get("CLINIC_VAR_DIR") or str(ROOT / "var"),
    }
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "makemessages",
            "-l",
            "ru",
            "--no-location",
            "--ignore",
            "tests/*",
        ],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return polib.pofile(str(copy / "clinic" / "locale" / "ru" / "LC_MESSAGES" / "django.po"))


def test_every_string_has_a_russian_translation(regenerated_catalog: polib.POFile) -> None:
    missing = [entry.msgid for entry in regenerated_catalog.untranslated_entries()]
    fuzzy = [entry.msgid for entry in regenerated_catalog.fuzzy_entries()]
    assert missing == [], f"{len(missing)} strings lack a Russian translation"
    assert fuzzy == [], f"{len(fuzzy)} Russian translations are marked fuzzy"


def test_committed_catalogue_has_no_obsolete_or_broken_entries() -> None:
    catalogue = polib.pofile(str(ROOT / "clinic" / "locale" / "ru" / "LC_MESSAGES" / "django.po"))
    assert catalogue.percent_translated() == 100
    for entry in catalogue.translated_entries():
        for placeholder in ("%(value)s", "%(name)s", "{}"):
            if placeholder in entry.msgid:
                translations = (
                    entry.msgstr_plural.values() if entry.msgid_plural else [entry.msgstr]
                )
                assert all(placeholder in text for text in translations), entry.msgid
