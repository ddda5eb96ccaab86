"""`metrics.json`: what a run measured, on which data, with which software, in how long."""

from __future__ import annotations

import datetime
import os
import platform
import sys
from pathlib import Path

import numpy
import scipy

from common.atomic import write_json


def versions() -> dict[str, str]:
    """Versions of what the run used (TensorFlow and Keras only if the chapter loaded them)."""
    found = {"python": platform.python_version(), "numpy": numpy.__version__,
             "scipy": scipy.__version__}
    if "keras" in sys.modules:
        keras = sys.modules["keras"]
        found.update(tensorflow=sys.modules["tensorflow"].__version__,
                     keras=keras.__version__, backend=keras.backend.backend())
    return found


def write_metrics(out: Path, *, chapter: str, data, args, wall_seconds: float,
                  models: dict[str, dict], extra: dict | None = None,
                  epochs: int | None = None, judge=None) -> Path:
    """Write `out/metrics.json`. `data` is a common.data.Dataset (or a dict for synthetic
    data); `models` maps each model's name to its numbers; `epochs` is the count the
    run settled (common.training.prepare), else `--epochs`; `judge` is the
    common.eval.classifier.FeatureClassifier that scored the run, if one did."""
    record = {
        "chapter": chapter,
        "dataset": data.as_dict() if hasattr(data, "as_dict") else data,
        "epochs": epochs if epochs is not None else getattr(args, "epochs", None),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "quick": bool(args.quick),
        **({"strategy": args.strategy_name, "replicas": args.replicas}
           if getattr(args, "strategy_name", None) else {}),
        **({"precision": args.precision} if hasattr(args, "precision") else {}),
        "wall_time_s": round(wall_seconds, 1),
        "models": models,
        **({"judge": judge.describe()} if judge is not None else {}),
        **(extra or {}),
        "date": datetime.date.today().isoformat(),
        "machine": {"cpus": _cpu_count(), "processor": platform.machine()},
        "versions": versions(),
    }
    return write_json(Path(out) / "metrics.json", record)


def _cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
