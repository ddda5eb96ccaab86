"""The Japanese guide (docs/ja/): in step with README's chapter table, and a map whose every
function and class exists."""

import importlib
import re

import pytest

from common.catalog import NAMES
from tests.conftest import ROOT

MAP = (ROOT / "docs" / "ja" / "map.md").read_text()
GUIDE = (ROOT / "docs" / "ja" / "README.md").read_text()


def chapter_table(text: str) -> str:
    start = text.index("| `classical_normal.py`")
    return text[start:text.index("\n\n", start)]


def test_the_guide_names_every_chapter_and_flag_of_the_readme_table():
    table = chapter_table((ROOT / "README.md").read_text())
    scripts = set(re.findall(r"`(\w+\.py)`", table))
    flags = set(re.findall(r"(--[a-z][a-z0-9-]*)", table))
    assert scripts == {f"{name}.py" for name in NAMES} | {"run_all.py"}
    missing = sorted(name for name in scripts | flags if name not in GUIDE)
    assert not missing, f"docs/ja/README.md does not mention {missing}"


def test_readme_points_to_the_guide():
    assert "docs/ja/README.md" in (ROOT / "README.md").read_text().split("\n## ")[0]


def map_rows():
    for line in MAP.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`") and cells[1].endswith(".py`"):
            yield cells[0], cells[1].strip("`")[:-3], re.findall(r"`([\w.*]+)`", cells[2])


def test_the_map_has_every_chapter():
    mapped = {script for _, script, _ in map_rows()}
    assert mapped == set(NAMES) - set(), sorted(set(NAMES) - mapped)


@pytest.mark.parametrize("section, script, names", list(map_rows()))
def test_every_name_in_the_map_exists(section, script, names):
    module = importlib.import_module(f"chapters.{script}")
    assert names, section
    for name in names:
        if name.startswith("common."):
            path, _, attribute = name.rpartition(".")
            owner, rest = importlib.import_module(path), [attribute]
        else:
            owner, rest = module, name.split(".")
        for part in rest:
            assert hasattr(owner, part), f"{section}: {script}.py has no {name}"
            owner = getattr(owner, part)
