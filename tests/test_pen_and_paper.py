"""Pen-and-paper notebook: 2-decimal checks with errors carried forward, through real autograding."""

from __future__ import annotations

import numpy as np
import pytest

from course_tools.authoring.examples import EXAMPLES
from course_tools.hidden.verdicts import pen_and_paper as grader
from course_tools.hidden.probes.kit import encode
from course_tools.hidden.verdicts.kit import Evidence, Wrong
from course_tools.authoring.submissions import learner_notebook

ASSIGNMENT, NOTEBOOK = "01_pen_and_paper", "pen_and_paper"
ALL_TESTS = [f"test_{name}" for name in grader.SHAPES]


def _grade(grading, student, edits):
    nb = learner_notebook(ASSIGNMENT, NOTEBOOK, edits, release_dir=grading.release_dir)
    cells = grading.grade(student, ASSIGNMENT, {NOTEBOOK: nb})["notebooks"][NOTEBOOK]["cells"]
    return {cell for cell, (score, max_score) in cells.items() if score != max_score}


def _example(student):
    return next(e for e in EXAMPLES if e.student == student).edits[ASSIGNMENT][NOTEBOOK]


def test_one_wrong_early_answer_costs_only_its_own_points(grading):
    assert _grade(grading, "slip", _example("slip_carried_forward")) == {"test_a"}


def test_a_transposed_gradient_costs_it_and_the_update_built_on_it(grading):
    assert _grade(grading, "transposed", _example("transposed_gradient")) == {"test_dL_dw1", "test_W1_updated"}


def test_numpy_arrays_and_full_precision_answers_are_right(grading):
    exact = grader.exact_values()
    edits = {
        "answer_a": ("a = [0.30, 0.24]", "import numpy as np\na = np.array([0.30, 0.24])"),
        "answer_dL_dw1": ("dL_dw1 = [[-0.07, -0.09, 0.02], [0.08, 0.11, -0.03]]",
                          f"dL_dw1 = np.array({np.reshape(exact['dL_dw1'], (2, 3)).tolist()})"),
        "answer_loss": ("loss = 0.03", f"loss = np.float64({exact['loss'][0]!r})"),
        "answer_y": ("y = [0.32]", f"y = {exact['y'][0]!r}"),
    }
    assert _grade(grading, "arrays", edits) == set()


def test_a_missing_answer_fails_its_check_and_the_direct_dependants(grading):
    assert _grade(grading, "missing_a", {"answer_a": ("a = [0.30, 0.24]", "a = None")}) == {"test_a", "test_z"}


def test_monkeypatching_numpy_earns_nothing(grading):
    """Verdicts are decided outside the kernel: a patched numpy scores what the honest wrong answer scores."""
    cheat = {"answer_a": ("a = [0.30, 0.24]",
                          "import numpy as np\nnp.allclose = lambda *args, **kwargs: True\n"
                          "np.isclose = lambda *args, **kwargs: True\nabs = lambda x: 0\na = [9.0, 9.0]")}
    assert _grade(grading, "cheat", cheat) == {"test_a"}


# ------------------------------------------------- the verdicts themselves, without nbgrader

def _check(name, answers):
    """The verdict on ``name`` for a record holding ``answers`` as a probe would have recorded them."""
    items = {f"answer:{key}": encode(value) for key, value in answers.items()}
    getattr(grader, f"check_{name}")(Evidence(f"check_{name}", 0, items))


def _rounded_answers():
    exact = grader.exact_values()
    shaped = {name: np.round(np.reshape(exact[name], grader.SHAPES[name]), 2) for name in grader.SHAPES}
    return {name: value.tolist() for name, value in shaped.items()}


@pytest.mark.parametrize("name", list(grader.SHAPES))
def test_checker_accepts_rounded_answers(name):
    _check(name, _rounded_answers())


@pytest.mark.parametrize("name", list(grader.SHAPES))
def test_checker_rejects_an_answer_off_by_two_hundredths(name):
    answers = _rounded_answers()
    flat = np.ravel(answers[name]).copy()
    flat[-1] += 0.02
    answers[name] = flat.reshape(grader.SHAPES[name]).tolist()
    with pytest.raises(Wrong, match=f"{name} is not right to 2 decimals"):
        _check(name, answers)


@pytest.mark.parametrize("bad, message", [("0.3", "plain numbers"), (True, "plain numbers"),
                                          (None, "still None")])
def test_checker_rejects_non_numbers(bad, message):
    answers = _rounded_answers()
    answers["loss"] = bad
    with pytest.raises(Wrong, match=message):
        _check("loss", answers)
