"""`metrics.json`: what a run measured, on which data, with which software, in how long; and
`read_run`, the one reader of earlier runs (another chapter's models, or this chapter's own).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path

import numpy
import scipy

from common.atomic import write_json
from common.errors import UserError, first_line


def versions() -> dict[str, str]:
    """Versions of what the run used (TensorFlow and Keras only if the chapter loaded them)."""
    found = {"python": platform.python_version(), "numpy": numpy.__version__,
             "scipy": scipy.__version__}
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        found.update(tensorflow=sys.modules["tensorflow"].__version__,
                     keras=keras.__version__, backend=keras.backend.backend())
    return found


def write_metrics(run, *, models: dict[str, dict], data=None, extra: dict | None = None,
                  epochs: int | None = None, judge=None) -> Path:
    """Write `run.out/metrics.json` for a common.run.Run: its chapter, data (`run.data`, or
    `data`, a dict, for synthetic data), settings and time (every part of a resumed run),
    `models` (each model's name -> its numbers), the judge that scored it
    (common.eval.classifier.FeatureClassifier), machine and versions. `epochs` overrides
    `run.epochs` where a chapter settled another count."""
    data = run.data if data is None else data
    settings = run.settings()
    if epochs is not None:
        settings["epochs"] = epochs
    record = {
        "chapter": run.chapter,
        "dataset": data.as_dict() if hasattr(data, "as_dict") else data,
        **settings,
        **run.wall_time(),
        "models": models,
        **({"judge": judge.describe()} if judge is not None else {}),
        **(extra or {}),
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": _cpu_count(), "processor": platform.machine()},
        "versions": versions(),
    }
    return write_json(Path(run.out) / "metrics.json", record)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


# ---------------------------------------------------------------------------------------------
# Reading an earlier run: the one way a chapter uses what another chapter (or itself) saved.

class EarlierRun:
    """A finished run in `folder`: its metrics.json, and its saved files on request. Every
    fault (a missing or damaged file, another chapter's models, a file of the wrong kind) is
    one UserError that says which file and how to make it again."""

    def __init__(self, folder: Path, chapter: str, record: dict, remedy: str):
        self.folder, self.chapter, self.record, self.remedy = folder, chapter, record, remedy

    @classmethod
    def files_of(cls, folder: Path, chapter: str, remedy: str) -> EarlierRun:
        """The files of a folder that has no metrics.json of its own (a run's backup), read
        with the same one-line errors."""
        return cls(Path(folder), chapter, {}, remedy)

    @property
    def dataset(self) -> str:
        return self.record["dataset"]["name"]

    def number(self, *keys, default=None):
        """A value of metrics.json by its path of keys (`default` where it is absent)."""
        value = self.record
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                return default
            value = value[key]
        return value

    def path(self, name: str) -> Path:
        path = self.folder / name
        if not path.is_file():
            raise UserError(f"{path} does not exist; {self.remedy}")
        return path

    def model(self, name: str, *, layers: tuple[str, ...] = (), inputs: int | None = None):
        """The Keras model saved as `name`, loaded with safe_mode=True (import the chapter that
        made it first, for its registered layers); it must have the named `layers` and as
        many `inputs` as given, or it is not what this chapter saved."""
        import keras

        path = self.path(name)
        try:
            model = keras.saving.load_model(path, safe_mode=True)
        except Exception as err:  # zip, HDF5, JSON or unknown-layer damage: say which file
            raise UserError(f"{path} is not a loadable Keras model ({first_line(err)}); "
                            f"{self.remedy}") from None
        names = {layer.name for layer in getattr(model, "layers", [])}
        missing = [name for name in layers if name not in names]
        if missing or (inputs is not None and len(model.inputs) != inputs):
            what = (f"no layer {missing[0]!r}" if missing
                    else f"{len(model.inputs)} inputs, not {inputs}")
            raise UserError(f"{path} is not the model {self.chapter} saves ({what}); "
                            f"{self.remedy}")
        return model

    def json(self, name: str, keys: tuple[str, ...] = ()) -> dict:
        """A JSON file of the run, which must be an object holding `keys`."""
        path = self.path(name)
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(f"{path} is damaged ({first_line(err)}); {self.remedy}") from None
        absent = [k for k in keys if not isinstance(value, dict) or k not in value]
        if absent:
            raise UserError(f"{path} lacks {absent[0]!r}; {self.remedy}")
        return value


def read_run(folder: Path, chapter: str, *, dataset: str | None = None,
             files: tuple[str, ...] = (), allow_quick: bool = False,
             remedy: str | None = None) -> EarlierRun:
    """The finished run of `chapter` in `folder`, for `dataset` if one is given, holding
    `files`; a UserError (one line: what is wrong and `remedy`, by default the command that
    makes the run) when there is none, it is damaged, another chapter's, of other data or a
    --quick run (unless `allow_quick`)."""
    folder = Path(folder)
    remedy = remedy or f"run python chapters/{chapter}.py --out {folder} first"
    path = folder / "metrics.json"
    if not path.is_file():
        raise UserError(f"{folder} holds no finished run of {chapter} (no metrics.json); "
                        f"{remedy}")
    try:
        record = json.loads(path.read_text())
        made_by, used = record["chapter"], record["dataset"]["name"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is damaged ({first_line(err)}); {remedy}") from None
    if made_by != chapter:
        raise UserError(f"{folder} holds a run of {made_by}, not of {chapter}; {remedy}")
    if dataset is not None and used != dataset:
        raise UserError(f"{folder} holds a {chapter} run on {used}, not {dataset}; {remedy}")
    if record.get("quick") and not allow_quick:
        raise UserError(f"{folder} holds a --quick run of {chapter} (a smoke test); {remedy}")
    run = EarlierRun(folder, chapter, record, remedy)
    for name in files:
        run.path(name)
    return run


def find_run(folder: Path, chapter: str, *, dataset: str, files: tuple[str, ...] = ()
             ) -> EarlierRun | None:
    """`read_run` for an optional comparison: None, with one line saying why, when there is
    no usable run (the chapter then goes on without the comparison)."""
    try:
        return read_run(folder, chapter, dataset=dataset, files=files,
                        remedy=f"run chapters/{chapter}.py on {dataset} for the comparison")
    except UserError as err:
        print(f"not compared: {err}")
        return None
