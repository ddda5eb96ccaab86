"""The notebooks: one per chapter, made from the chapter's source and in step with it.

Each chapter's quick smoke test runs its notebook (tests/conftest.py run_notebook), so a
notebook that breaks fails the suite; these tests check how notebooks are made."""

import shutil

import nbformat
import pytest

from common import notebooks
from common.catalog import NAMES
from tests.conftest import ROOT


@pytest.mark.parametrize("name", NAMES)
def test_every_chapter_has_its_notebook_and_it_is_in_step(name):
    committed = nbformat.read(notebooks.path_of(name), as_version=4)
    made = notebooks.build(name, committed)
    assert [(c.cell_type, c.source) for c in committed.cells] == \
           [(c.cell_type, c.source) for c in made.cells], (
        f"notebooks/{name}.ipynb is not what chapters/{name}.py makes: run "
        f"python -m common.notebooks {name}")
    assert notebooks.path_of(name).stat().st_size < 1024 * 1024  # a stored run included


def test_a_notebook_follows_the_lesson():
    cells = notebooks.chapter_cells(ROOT / "chapters" / "ch2_vae.py")
    kinds = [kind for kind, _ in cells]
    sources = [source for _, source in cells]
    assert kinds[0] == "markdown" and sources[0].startswith("# Chapter 2")
    assert "REPOSITORY_URL" in sources[1] and "check_versions()" in sources[1]  # set-up
    parameters = next(s for s in sources if s.startswith("# The chapter's flags"))
    assert 'QUICK = os.environ.get("QUICK") == "1"' in parameters
    assert "KL_WEIGHT = 1.0" in parameters and "SUMMARY" not in parameters
    order = [next(i for i, s in enumerate(sources) if marker in s)
             for marker in ("def sample_latent", "# The chapter's flags", "run = start(",
                            "figures.data_grid", "print_summary(model, parts=True)",
                            "= train_both(", "fid_report(", "write_metrics(")]
    assert order == sorted(order)  # definitions, parameters, then the run's steps in turn
    assert any(kind == "markdown" and source.startswith("The data:")
               for kind, source in cells)  # a step's comment became its text
    assert sources[-1].endswith("run.finish()")


def test_the_parameters_cell_makes_the_command_line():
    from chapters import ch2_vae

    parser = ch2_vae.flags()
    values = {"EPOCHS": 2, "DATASET": "mnist5k", "QUICK": True, "KL_WEIGHT": 1.0,
              "BATCH_SIZE": 128, "SEED": 3, "PRECISION": "float32", "OTHER": "ignored"}
    assert notebooks.argv_from(parser, values) == ["--epochs", "2", "--dataset", "mnist5k",
                                                   "--seed", "3", "--quick"]


def test_editing_a_markdown_cell_changes_that_cell_and_nothing_else(tmp_path, monkeypatch):
    name = "ch1_edge_filters"
    committed = nbformat.read(notebooks.path_of(name), as_version=4)
    project = tmp_path / "project"
    shutil.copytree(ROOT / "chapters", project / "chapters")
    source = project / "chapters" / f"{name}.py"
    text = source.read_text()
    old = "# The two hand-made filters: a frozen convolution of 52 parameters."
    assert old in text
    source.write_text(text.replace(old, "# The two filters, set by hand: 52 parameters."))
    monkeypatch.setattr(notebooks, "ROOT", project)
    edited = notebooks.build(name, committed)
    changed = [i for i, (a, b) in enumerate(zip(committed.cells, edited.cells))
               if (a.cell_type, a.source, a.get("outputs")) !=
               (b.cell_type, b.source, b.get("outputs"))]
    assert len(edited.cells) == len(committed.cells) and len(changed) == 1
    assert edited.cells[changed[0]].source == "The two filters, set by hand: 52 parameters."
    assert edited.metadata == committed.metadata


def test_a_parameter_that_would_replace_a_chapter_name_is_refused(monkeypatch):
    """A notebook runs the chapter's definitions and its parameters in one namespace: a flag
    whose variable is also a name of the chapter (ch5_samplers once imported SAMPLERS, the
    --samplers parameter replaced it) is caught when the notebook is made, unless that name is
    the flag's default itself."""
    import chapters.ch2_vae

    monkeypatch.setattr(chapters.ch2_vae, "KL_WEIGHT", (0.5, 1.0), raising=False)
    with pytest.raises(ValueError, match="KL_WEIGHT"):
        notebooks.build("ch2_vae", None)
