"""The 演習 as tests: each passes when its two runs exist and the change showed its effect.

Marked `exercise`, so README's test command (and CI) leaves them out; a learner runs
    python -m pytest tests/exercises -m exercise [-k ch2_vae_kl0]
after the two commands of `python -m tests.exercises.catalog`.
"""

import pytest

from tests.exercises.catalog import EXERCISES, reference_command, verdict

pytestmark = pytest.mark.exercise


@pytest.mark.parametrize("exercise", EXERCISES, ids=[e.key for e in EXERCISES])
def test_exercise(exercise):
    result = verdict(exercise)
    if result is None:
        pytest.skip(f"not run yet / 未実行: {reference_command(exercise)} ; "
                    f"{exercise.command()}")
    assert result.passed, str(result)
