"""Every chapter as a notebook, made from the chapter's own source: one source, two forms.

A chapter script is the source. `python -m common.notebooks` turns each into
`notebooks/<chapter>.ipynb` without a second copy of its code to keep in step (the way
keras-io's tutobooks turn its examples into notebooks, with rules of our own):

- the module docstring becomes the first markdown cell, after a set-up cell that finds the
  project (or fetches it on Colab or Kaggle, from REPOSITORY_URL) and checks the versions;
- the imports become one cell; each banner comment (a line of dashes, then the heading)
  becomes a markdown heading, and each top-level definition under it a code cell, so a learner
  can change one layer and run on;
- `flags()`, the chapter's command line, becomes the parameters cell: one variable per flag
  with its default (QUICK also from the QUICK environment variable, as CI runs them);
- the body of main's `with start(args, ...) as run:` becomes the walkthrough, one cell per
  step: comment lines that start with a capital letter open a step and become its markdown
  text (lower-case comments stay in the code as notes).
A chapter is never changed for its notebook, and importing a chapter still trains nothing.

Run in a notebook (an IPython kernel), the chapters show every figure they save under the cell
that made it, and Keras's progress bar while they train.

Regenerating keeps each cell's stored outputs where its source is unchanged; `--execute` runs
the notebooks (with default parameters, or QUICK=1 in the environment) and stores the new
outputs, shrunk to what a reader needs.
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import os
import re
import sys
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# Where a hosted runtime (Colab, Kaggle) fetches the project from: the one place to set when
# the project is published. Empty: a hosted notebook says so in one line and stops.
REPOSITORY_URL = ""
BANNER = re.compile(r"^# -{20,}$")
OVERRIDES = "# (parameters set for a stored or tested run go here)"
SKIPPED_FLAGS = {"help", "summary"}


# ---------------------------------------------------------------------------------------------
# In a running notebook.

def active() -> bool:
    """Whether this process is a notebook's kernel (IPython's ZMQ shell)."""
    shell = sys.modules.get("IPython")
    shell = shell.get_ipython() if shell is not None and hasattr(shell, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def show(path: Path, width: int = 640) -> None:
    """Show a saved PNG under the running cell (in a notebook; nothing elsewhere), at screen
    resolution and in at most 128 colours, so that a stored notebook stays small."""
    if not active():
        return
    from IPython.display import Image, display
    from PIL import Image as Picture

    picture = Picture.open(path).convert("RGB")
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)),
                                 Picture.LANCZOS)
    buffer = io.BytesIO()
    picture.quantize(colors=128).save(buffer, format="PNG", optimize=True)
    display(Image(data=buffer.getvalue(), format="png"))


def argv_from(parser: argparse.ArgumentParser, values: dict) -> list[str]:
    """The command line of the parameters cell: `values` maps each flag's variable name
    (`--batch-size` -> BATCH_SIZE) to its value; defaults and None are left out."""
    argv = []
    for action in parser._actions:
        name = action.dest.upper()
        if action.dest in SKIPPED_FLAGS or not action.option_strings or name not in values:
            continue
        value, flag = values[name], action.option_strings[-1]
        if value is None or value == action.default:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            argv += [flag] if value else []
        elif isinstance(value, (list, tuple)) and not isinstance(action.default, tuple):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(map(str, value))]
        else:
            argv += [flag, str(value)]
    return argv


def check_versions() -> str | None:
    """One warning line when this runtime's TensorFlow or Keras is not the tested one (the
    requirements' pins): version drift is what breaks notebooks first. Read from the installed
    packages' records, without importing them."""
    from importlib.metadata import PackageNotFoundError, version

    pins = dict(re.findall(r"^(tensorflow|keras)==([\d.*]+)", (ROOT / "requirements.txt")
                           .read_text(), flags=re.M))
    drift = []
    for name, pin in pins.items():
        try:
            found = version(name)
        except PackageNotFoundError:
            found = "none"
        if not found.startswith(pin.rstrip("*").rstrip(".")):
            drift.append(f"{name} {found} (tested: {pin})")
    if drift:
        line = f"warning: this runtime has {', '.join(drift)}; results may differ"
        print(line)
        return line
    return None


# ---------------------------------------------------------------------------------------------
# From a chapter's source to its cells.

def _comments(source: str) -> dict[int, str]:
    """Full-line comments by line number (1-based)."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT and token.line.strip().startswith("#"):
            found[token.start[0]] = token.line.strip()
    return found


def _markdown_of(comments: list[str]) -> str:
    return " ".join(line.lstrip("#").strip() for line in comments).strip()


def _segment(lines: list[str], node) -> str:
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "".join(lines[first - 1:node.end_lineno])


def _is_script_guard(node) -> bool:
    """`if __package__ ...` (the path set-up of a script) and `if __name__ == "__main__"`."""
    return isinstance(node, ast.If) and "__" in ast.unparse(node.test)


def _first_stop(line: str) -> int:
    """Where the first ": " or ". " outside parentheses is in `line` (0 if none)."""
    depth = 0
    for at, char in enumerate(line[:-1]):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and char in ":." and line[at + 1] == " " and at > 0:
            return at
    return 0


def _banner_above(lines, comments, lineno) -> tuple[str, list[str]] | None:
    """The banner heading and text directly above `lineno`, if any."""
    block, line = [], lineno - 1
    while line >= 1 and (line in comments or not lines[line - 1].strip()):
        if line in comments:
            block.insert(0, (line, comments[line]))
        line -= 1
    for i, (_, text) in enumerate(block):
        if BANNER.match(text):
            body = [t.lstrip("#").strip() for _, t in block[i + 1:]]
            if not body:
                return "", []
            # "The two players (sec. 3): no pooling, ..." -> heading and text at the first ": "
            # or ". " of the first line; a heading line alone ends at the line
            stop = _first_stop(body[0])
            if len(body) > 1 and stop:
                rest = " ".join(body)[stop + 2:]
                return body[0][:stop], [rest[:1].upper() + rest[1:]]
            return body[0].rstrip("."), body[1:]
    return None


def chapter_cells(path: Path) -> list[tuple[str, str]]:
    """(kind, source) of every cell of the chapter at `path`: "markdown" or "code"."""
    source = path.read_text()
    tree, lines = ast.parse(source), source.splitlines(keepends=True)
    comments = _comments(source)
    name = path.stem
    doc = ast.get_docstring(tree) or name
    title, _, story = doc.partition("\n")
    cells = [("markdown", f"# {title}\n\n{_story(story)}\n\n{_banner_links(name)}"),
             ("code", _setup_cell())]
    imports, main, constants = [], None, False
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and node is \
                tree.body[0]:
            continue  # the docstring
        if _is_script_guard(node):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(_segment(lines, node).strip())
            continue
        if isinstance(node, ast.FunctionDef) and node.name == "main":
            main = node
            continue
        banner = _banner_above(lines, comments, node.lineno)
        if banner is not None:
            heading, text = banner
            cells.append(("markdown", f"## {heading}\n\n{' '.join(text)}".strip()))
        segment = _segment(lines, node).rstrip()
        if constants and _simple(node) and banner is None:
            cells[-1] = ("code", cells[-1][1] + "\n" + segment)  # constants stay together
        else:
            cells.append(("code", segment))
        constants = _simple(node)
    cells.insert(2, ("code", "\n".join(i for i in imports if "__future__" not in i)))
    if main is None:
        raise ValueError(f"{path}: no main() to make the walkthrough from")
    return cells + _walkthrough(main, lines, comments, name)


def _simple(node) -> bool:
    return isinstance(node, (ast.Assign, ast.AnnAssign))


def _story(text: str) -> str:
    """The docstring's text without its Run: lines (the notebook is how it runs here)."""
    kept = text.split("\nRun:")[0].strip()
    return textwrap.dedent(kept)


def _banner_links(name: str) -> str:
    path = f"notebooks/{name}.ipynb"
    if not REPOSITORY_URL:
        return (f"*This notebook is made from `chapters/{name}.py` by `python -m "
                "common.notebooks`; edit the chapter, not the notebook.*")
    github = REPOSITORY_URL.removeprefix("https://github.com/").removesuffix(".git")
    return (f"[Open in Colab](https://colab.research.google.com/github/{github}/blob/main/"
            f"{path}) | [Open in Kaggle](https://kaggle.com/kernels/welcome?src="
            f"{REPOSITORY_URL}/blob/main/{path})\n\n*This notebook is made from "
            f"`chapters/{name}.py` by `python -m common.notebooks`; edit the chapter, not the "
            "notebook.*")


def _setup_cell() -> str:
    return f'''# Set-up: find the project (on Colab or Kaggle, fetch it and install its pinned
# requirements), work from its folder, and check the TensorFlow and Keras versions.
import os
import subprocess
import sys
from pathlib import Path

REPOSITORY_URL = {REPOSITORY_URL!r}  # set in common/notebooks.py
HOSTED = "google.colab" in sys.modules or "KAGGLE_KERNEL_RUN_TYPE" in os.environ
root = next((p for p in (Path.cwd(), *Path.cwd().parents)
             if (p / "common" / "notebooks.py").exists()), None)
if root is None and HOSTED and REPOSITORY_URL:
    subprocess.run(["git", "clone", "--depth", "1", REPOSITORY_URL, "companion"], check=True)
    root = Path("companion").resolve()
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r",
                    str(root / "requirements.txt")], check=True)
if root is None:
    raise SystemExit("the project's folder was not found: open this notebook from its "
                     "notebooks/ folder, or set REPOSITORY_URL in common/notebooks.py")
os.chdir(root)
sys.path.insert(0, str(root))
from common.notebooks import check_versions  # noqa: E402

check_versions()'''


def _parameters_cell(name: str) -> str:
    """One variable per flag of the chapter, with its default, and the `args` they make."""
    parser = _parser_of(name)
    rows = []
    for action in parser._actions:
        if action.dest in SKIPPED_FLAGS or not action.option_strings:
            continue
        variable = action.dest.upper()
        # One namespace in a notebook: a chapter's name may be the flag's default itself
        # (LATENT_DIM = 32, default=LATENT_DIM), never anything else (a list of choices)
        module = sys.modules[f"chapters.{name}"]
        if hasattr(module, variable) and getattr(module, variable) != action.default:
            raise ValueError(f"chapters/{name}.py already has a name {variable}: the notebook's "
                             f"parameter for --{action.dest} would replace it; rename it there")
        if action.dest == "quick":
            rows.append(f'{variable} = os.environ.get("QUICK") == "1"  # {_help(action)}')
            continue
        default = action.default
        default = str(default) if isinstance(default, Path) else default
        default = list(default) if isinstance(default, tuple) else default
        rows.append(f"{variable} = {default!r}  # {_help(action)}")
    return ("# The chapter's flags (its --help), one variable each: edit, then run the cells "
            "below.\nfrom common.notebooks import argv_from\n\n" + "\n".join(rows) +
            f"\n{OVERRIDES}\nparser = flags()\nargs = parse(parser, argv_from(parser, globals()))"
            "\nargs")


def _help(action) -> str:
    text = (action.help or "").replace("%%", "%")
    text = re.sub(r"\s*\(default[^)]*\)", "", text)
    return text[:80].rstrip() + ("..." if len(text) > 80 else "")


def _parser_of(name: str) -> argparse.ArgumentParser:
    """The chapter's `flags()` (imports the chapter: it trains nothing when imported)."""
    import importlib

    sys.path.insert(0, str(ROOT))
    return importlib.import_module(f"chapters.{name}").flags()


def _walkthrough(main, lines, comments, name: str) -> list[tuple[str, str]]:
    """main() as cells: the parameters cell, the checks before the run, `run = start(...)`,
    then one cell per commented step of the run's body, then what follows it."""
    cells = [("markdown", "## Run the chapter, step by step\n\nThe parameters cell holds "
                          "the chapter's flags; `start` then sets up the run they describe "
                          "(common.run). Each cell below is one step of `main()` in "
                          f"`chapters/{name}.py`."),
             ("code", _parameters_cell(name))]
    body = main.body
    if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    checks = []
    for node in body:
        text = _segment(lines, node)
        if isinstance(node, ast.With):
            if checks:
                cells.append(("code", textwrap.dedent("".join(checks)).strip()))
            call = ast.unparse(node.items[0].context_expr)
            target = ast.unparse(node.items[0].optional_vars)
            cells.append(("code", f"{target} = {call}  # seeds, devices, output folder, data"))
            cells += _steps(node.body, lines, comments)
            checks = []
        elif _is_setup(node):
            continue
        elif isinstance(node, ast.Return):
            continue
        else:
            checks.append(text)
    tail = textwrap.dedent("".join(checks)).strip()
    cells.append(("code", f"{tail}\nrun.finish()" if tail else "run.finish()"))
    return cells


def _is_setup(node) -> bool:
    """The lines the parameters cell replaces: the parser, parse, and the --summary exit."""
    text = ast.unparse(node)
    return (text.startswith(("parser = flags()", "args = parse("))
            or (isinstance(node, ast.If) and "args.summary" in ast.unparse(node.test)))


def _steps(body, lines, comments) -> list[tuple[str, str]]:
    """The run's body split into steps: a step starts at a statement with full-line comments
    directly above it that start with a capital letter; they become its markdown cell."""
    steps: list[tuple[list[str], list[str]]] = []
    for node in body:
        block, line = [], node.lineno - 1
        while line in comments:
            block.insert(0, comments[line])
            line -= 1
        opens = bool(block) and block[0].lstrip("# ")[:1].isupper()
        if opens or not steps:
            steps.append((block if opens else [], []))
        first = node.lineno if opens else node.lineno - len(block)  # keep lower-case notes
        steps[-1][1].append("".join(lines[first - 1:node.end_lineno]))
    cells = []
    for above, code in steps:
        if above:
            cells.append(("markdown", _markdown_of(above)))
        cells.append(("code", _quiet(textwrap.dedent("".join(code)).strip())))
    return cells


def _quiet(code: str) -> str:
    """A cell that ends in a call (a figure, a save) shows nothing of what it returns: the
    notebook's `;`. A cell that ends in print() or a name shows what it was written to."""
    last = ast.parse(code).body[-1]
    if (isinstance(last, ast.Expr) and isinstance(last.value, ast.Call)
            and ast.unparse(last.value.func) not in ("print", "display")):
        return code + ";"
    return code


# ---------------------------------------------------------------------------------------------
# Writing, merging stored outputs, executing.

def build(name: str, old=None):
    """The notebook of chapter `name`, with the outputs of `old` (a notebook) kept for every
    cell whose source is unchanged."""
    import nbformat

    stored = {}
    for cell in (old.cells if old is not None else []):
        if cell.cell_type == "code":
            stored.setdefault(cell.source, (cell.get("outputs", []),
                                            cell.get("execution_count")))
    notebook = nbformat.v4.new_notebook()
    notebook.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"},
                         "language_info": {"name": "python"}}
    cells = chapter_cells(ROOT / "chapters" / f"{name}.py")
    if old is not None and old.metadata.get("companion"):
        notebook.metadata["companion"] = info = old.metadata["companion"]
        changed = ", ".join(f"{k} = {v!r}" for k, v in info.get("parameters", {}).items())
        kind = ("a --quick smoke test" if info.get("quick") else
                f"a run with {changed} and the other parameters as above" if changed else
                "a run with the parameters as above")
        cells[0] = ("markdown", f"{cells[0][1]}\n\n*The outputs stored here are those of {kind} "
                                f"on {info.get('data')}, {info.get('minutes')} min in all, on "
                                f"{info.get('date')} (2-core CPU).*")
    for i, (kind, source) in enumerate(cells):
        if kind == "markdown":
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell(source)
            cell.outputs, cell.execution_count = stored.get(source, ([], None))
        cell.id = f"{name}-{i}"
        notebook.cells.append(cell)
    return notebook


def shrink(notebook, width: int = 900) -> None:
    """Outputs as a reader sees them: consecutive stream outputs joined and a progress bar's
    carriage-return updates reduced to their final state, images kept, long streams cut."""
    import nbformat

    for cell in notebook.cells:
        merged = []
        for output in cell.get("outputs", []):
            previous = merged[-1] if merged else None
            if (output.get("output_type") == "stream" and previous is not None
                    and previous.get("output_type") == "stream"
                    and previous.get("name") == output.get("name")):
                previous["text"] = "".join(previous["text"]) + "".join(output["text"])
            else:
                merged.append(nbformat.from_dict(dict(output)))
        if "outputs" in cell:  # rich leaves an empty HTML display beside a printed table
            cell["outputs"] = [o for o in merged if not (
                o.get("output_type") == "display_data"
                and not "".join(o.get("data", {}).get("text/plain", "x")).strip()
                and "image/png" not in o.get("data", {}))]
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                text = "".join(output.get("text", ""))
                text = "\n".join(line.split("\r")[-1] for line in text.split("\n"))
                text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)  # terminal colours
                rows = text.split("\n")
                if len(rows) > 400:
                    rows = rows[:200] + [f"... ({len(rows) - 400} lines left out)"] + rows[-200:]
                output["text"] = "\n".join(row[:width] for row in rows)


def execute(notebook, overrides: dict | None = None, timeout: int = 7200) -> None:
    """Run every cell in a fresh kernel started in notebooks/, with `overrides` ({"DATASET":
    "fashion_mnist", "OUT": "/tmp/x"}) set after the parameters' defaults; an error in a
    cell raises (nbclient's CellExecutionError, naming the cell)."""
    from nbclient import NotebookClient

    if overrides:
        for cell in notebook.cells:
            if cell.cell_type == "code" and OVERRIDES in cell.source:
                lines = "\n".join(f"{k} = {v!r}" for k, v in overrides.items())
                cell.source = cell.source.replace(OVERRIDES, f"{OVERRIDES}\n{lines}")
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    shrink(notebook)


def path_of(name: str) -> Path:
    return NOTEBOOKS / f"{name}.ipynb"


def main(argv=None) -> int:
    """`python -m common.notebooks [--execute] [CHAPTER ...]`: regenerate the notebooks."""
    import nbformat

    from common.catalog import BY_NAME, NAMES

    parser = argparse.ArgumentParser(prog="python -m common.notebooks", description=main.__doc__)
    parser.add_argument("chapters", nargs="*", choices=[[], *NAMES], metavar="CHAPTER",
                        help="the chapters to regenerate (default: all)")
    parser.add_argument("--execute", action="store_true",
                        help="run each notebook and store its outputs (QUICK=1 in the "
                             "environment for the quick smoke test)")
    parser.add_argument("--dataset", help="with --execute: the data of the stored runs")
    parser.add_argument("--out-root", type=Path, default=Path("outputs"),
                        help="with --execute: where the runs write, one folder per chapter, "
                             "as run_all.py does (default outputs)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="with --execute: a parameter of the stored run, as Python "
                             "(repeatable; e.g. --set SAMPLES=500)")
    args = parser.parse_args(argv)
    NOTEBOOKS.mkdir(exist_ok=True)
    for name in args.chapters or NAMES:
        path = path_of(name)
        old = nbformat.read(path, as_version=4) if path.exists() else None
        notebook = build(name, None if args.execute else old)
        if args.execute:
            print(f"executing {path.name} ...", flush=True)
            overrides = {**_wiring(name, args.out_root),
                         **dict(_setting(text) for text in args.set)}
            if args.dataset and BY_NAME[name].takes_dataset:
                overrides["DATASET"] = args.dataset
            execute(notebook, overrides)
            wired = _wiring(name, args.out_root)
            notebook.metadata["companion"] = {**stored_run(Path(overrides["OUT"])), "parameters": {
                k: v for k, v in overrides.items() if k != "DATASET" and k not in wired}}
            notebook = build(name, notebook)  # the first cell names the stored run
        from common.atomic import write_text

        write_text(path, nbformat.writes(notebook) + "\n")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


def _setting(text: str) -> tuple[str, object]:
    """'SAMPLES=500' -> ("SAMPLES", 500): the value read as a Python literal, else a string."""
    name, _, value = text.partition("=")
    try:
        return name.strip(), ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return name.strip(), value


def _wiring(name: str, root: Path) -> dict:
    """OUT under `root`, and the earlier runs the chapter reads (common.catalog) there too."""
    from common.catalog import BY_NAME

    values = {"OUT": str(root / name)}
    for needs in BY_NAME[name].reads:
        target = root / needs.chapter / needs.file
        if not needs.optional or (ROOT / target).exists():
            values[needs.flag.lstrip("-").replace("-", "_").upper()] = str(target)
    return values


def stored_run(out: Path) -> dict:
    """What the executed run was: data, time, date, quick (from its metrics.json)."""
    try:
        record = json.loads((ROOT / out / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}
    data = record.get("dataset")
    data = data.get("name") if isinstance(data, dict) and "name" in data else "its own data"
    return {"data": data, "minutes": round(record.get("wall_time_s", 0) / 60, 1),
            "date": record.get("date"), "quick": bool(record.get("quick"))}


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
