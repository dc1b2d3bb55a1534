"""The hidden-test engine: seeds, records and verdicts decided outside the kernel (no kernel needed).

A pen-and-paper notebook is "run" here by filling its test cells' outputs with the records the
probes publish in this process, then judged by the same functions the nbgrader preprocessors call.
"""

from __future__ import annotations

import copy
import json

import nbformat
import pytest

from course_tools.course import SOURCE_DIR, notebooks
from course_tools.hidden.probes import kit
from course_tools.hidden.probes.kit import RECORD_MIME, default_seed
from course_tools.hidden.verdicts import engine
from course_tools.hidden.verdicts.pen_and_paper import exact_values
from course_tools.authoring.nbgrader_ext import ScrubGraderText, grader_lines

NOTEBOOK = SOURCE_DIR / "01_pen_and_paper" / "pen_and_paper.ipynb"
SECRET = b"a course secret for tests"


def _answers(**changes):
    answers = {name: value for name, value in exact_values().items()}
    answers.update(changes)
    return answers


def _executed(answers, seed_of=None):
    """The source notebook as if a kernel had run it: each hidden cell's outputs hold its probe's record."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    if seed_of is not None:
        engine.seed_notebook(nb, seed_of)
    for grade_id, call in engine.hidden_calls(nb):
        cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        seed = seed_of(grade_id) if seed_of else None
        kit.SINK = sink = []
        try:
            module = __import__(f"course_tools.hidden.probes.{call.module}", fromlist=[call.check])
            getattr(module, call.check)(dict(answers), seed=seed)
        finally:
            kit.SINK = None
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="visible checks passed\n")] + \
            [nbformat.v4.new_output("display_data", data={RECORD_MIME: record, "text/plain": "r"})
             for record in sink]
    return nb


def _failed(nb):
    return {c.metadata["nbgrader"]["grade_id"]: o["evalue"] for c in nb.cells for o in c.get("outputs", [])
            if o.get("output_type") == "error"}


def _seed_of(student, code):
    return lambda grade_id: engine.cell_seed(SECRET, assignment="01_pen_and_paper", student=student,
                                             notebook="pen_and_paper", grade_id=grade_id, code=code)


def test_right_answers_pass_and_records_leave_the_notebook():
    nb = _executed(_answers())
    engine.decide_notebook(nb)
    assert _failed(nb) == {}
    assert RECORD_MIME not in json.dumps([c.get("outputs", []) for c in nb.cells])


def test_a_wrong_answer_becomes_an_error_output_with_a_message():
    nb = _executed(_answers(a=[9.0, 9.0]))
    engine.decide_notebook(nb)
    assert set(_failed(nb)) == {"test_a"}
    assert "not right to 2 decimals" in _failed(nb)["test_a"]


def test_seeds_are_stable_per_submission_and_differ_per_learner_cell_and_code():
    seed = engine.cell_seed(SECRET, assignment="a", student="s", notebook="n", grade_id="g", code="x = 1")
    again = engine.cell_seed(SECRET, assignment="a", student="s", notebook="n", grade_id="g", code="x = 1")
    others = {engine.cell_seed(SECRET, assignment="a", student="t", notebook="n", grade_id="g", code="x = 1"),
              engine.cell_seed(SECRET, assignment="a", student="s", notebook="n", grade_id="h", code="x = 1"),
              engine.cell_seed(SECRET, assignment="a", student="s", notebook="n", grade_id="g", code="x = 2"),
              engine.cell_seed(b"another secret", assignment="a", student="s", notebook="n", grade_id="g",
                               code="x = 1")}
    assert seed == again and seed not in others and len(others) == 4
    assert 0 <= seed < 2**63


def test_a_record_made_with_another_seed_is_refused():
    code = engine.learner_code(nbformat.read(NOTEBOOK, as_version=4))
    nb = _executed(_answers(), seed_of=_seed_of("mallory", code))  # recorded under mallory's seeds
    engine.decide_notebook(nb, _seed_of("alice", code))  # graded as alice
    assert len(_failed(nb)) == 12
    assert all("malformed" in message for message in _failed(nb).values())


def test_missing_duplicated_or_numeric_results_score_nothing():
    nb = _executed(_answers())
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    cells[0].outputs = [o for o in cells[0].outputs if o.output_type != "display_data"]
    cells[1].outputs = cells[1].outputs + copy.deepcopy([o for o in cells[1].outputs if o.output_type == "display_data"])
    cells[2].outputs.insert(0, nbformat.v4.new_output("execute_result", data={"text/plain": "0.5"}, execution_count=1))
    engine.decide_notebook(nb)
    failed = _failed(nb)
    assert "no result reached the grader" in failed["test_a"]
    assert "more than one result" in failed["test_z"]
    assert "test_y" not in failed and not any(o.output_type == "execute_result" for o in cells[2].outputs)


def test_a_record_the_verdict_cannot_read_scores_nothing():
    nb = _executed(_answers())
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_loss")
    record = next(o for o in cell.outputs if o.output_type == "display_data")["data"][RECORD_MIME]
    record["items"]["answer:loss"] = {"array": "not base64!", "dtype": "<f8", "shape": [1]}
    engine.decide_notebook(nb)
    assert "test_loss" in _failed(nb)


@pytest.mark.parametrize("region", [
    "from course_tools.hidden.probes import pen_and_paper as _probes\n_probes.check_a(globals())\nprint(1)",
    "import course_tools.hidden.verdicts.pen_and_paper as v\nv.check_a(globals())",
    "from course_tools.hidden.probes import pen_and_paper as _probes\n_probes.check_a(globals(), seed=x)",
])
def test_a_hidden_region_that_is_not_the_two_lines_is_refused(region):
    with pytest.raises(ValueError, match="exactly the two lines"):
        engine.hidden_call(f"x = 1\n### BEGIN HIDDEN TESTS\n{region}\n### END HIDDEN TESTS\n")


def test_seeded_source_passes_the_seed_and_keeps_the_visible_part():
    source = nbformat.read(NOTEBOOK, as_version=4).cells
    cell = next(c for c in source if c.metadata.get("nbgrader", {}).get("grade_id") == "test_a")
    call = engine.hidden_call(cell.source)
    seeded = engine.seeded_source(cell.source, call, 1234)
    assert seeded.split("### BEGIN HIDDEN TESTS")[0] == cell.source.split("### BEGIN HIDDEN TESTS")[0]
    assert "_probes.check_a(globals(), seed=1234)" in seeded
    assert engine.hidden_call(seeded) == call


def test_every_source_notebook_has_only_canonical_hidden_regions_with_matching_verdicts():
    import importlib

    found = 0
    for path in sorted(SOURCE_DIR.glob("*/*.ipynb")):
        for grade_id, call in engine.hidden_calls(nbformat.read(path, as_version=4)):
            probes = importlib.import_module(f"course_tools.hidden.probes.{call.module}")
            verdicts = importlib.import_module(f"course_tools.hidden.verdicts.{call.module}")
            assert callable(getattr(probes, call.check)), (path, grade_id)
            assert callable(getattr(verdicts, call.check)), (path, grade_id)
            found += 1
    assert found >= 60


def test_the_course_secret_file_is_created_private_and_reused(tmp_path, monkeypatch):
    monkeypatch.delenv(engine.SECRET_ENV, raising=False)
    path = tmp_path / "secret"
    first = engine.course_secret(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600" and len(first) == 64
    assert engine.course_secret(path) == first
    monkeypatch.setenv(engine.SECRET_ENV, "from the environment")
    assert engine.course_secret(path) == b"from the environment"


def test_feedback_scrubber_removes_printed_grader_lines_and_records():
    line = next(iter(sorted(grader_lines())))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(stolen)")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"my own line\n    {line}\nanother\n"),
        nbformat.v4.new_output("display_data", data={RECORD_MIME: {"items": {}}, "text/plain": "record"}),
        nbformat.v4.new_output("display_data", data={"text/plain": f"{RECORD_MIME} was here"}),
    ]
    ScrubGraderText().preprocess(nb, {})
    outputs = nb.cells[0].outputs
    assert len(outputs) == 2
    assert outputs[0]["text"] == f"my own line\n{ScrubGraderText.notice}\nanother\n"
    assert RECORD_MIME not in json.dumps(outputs)


def test_default_seeds_differ_per_check():
    assert default_seed("check_a") != default_seed("check_z")


NO_TORCH_SCRIPT = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]
from learner_cells import run_as_notebook, verdict
from course_tools.hidden.probes import kit
import nbformat
namespace = run_as_notebook({assignment!r}, {notebook!r})
records = []
for cell in nbformat.read({path!r}, as_version=4).cells:
    if cell.cell_type == "code" and cell.metadata.get("nbgrader", {{}}).get("grade"):
        kit.SINK = sink = []
        exec(compile(cell.source, cell.id, "exec"), namespace)
        records += sink
print(len(records), any(r["torch_loaded"] for r in records), "torch" in sys.modules)
"""


@pytest.mark.parametrize("notebook", [path.stem for path in notebooks("02_numpy_library")])
def test_numpy_notebooks_grade_without_importing_torch_in_the_kernel(notebook):
    """The probes of a NumPy notebook, run after the reference solution in a fresh process, never load torch."""
    import subprocess
    import sys

    from course_tools.course import REPO_ROOT

    path = SOURCE_DIR / "02_numpy_library" / f"{notebook}.ipynb"
    script = NO_TORCH_SCRIPT.format(tests=str(REPO_ROOT / "tests"), root=str(REPO_ROOT), assignment="02_numpy_library",
                                    notebook=notebook, path=str(path))
    run = subprocess.run([sys.executable, "-c", script], cwd=path.parent, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    count, loaded_at_probe, loaded_at_end = run.stdout.strip().split("\n")[-1].split()
    assert int(count) == len(list(engine.hidden_calls(nbformat.read(path, as_version=4)))) > 0
    assert loaded_at_probe == loaded_at_end == "False", run.stdout


# ---------------------------------------------------------------- the grader's numbers


def _measuring(monkeypatch, measure):
    from course_tools.hidden.verdicts import pen_and_paper

    monkeypatch.setattr(pen_and_paper, "metrics", measure, raising=False)


def test_grader_numbers_come_from_well_formed_records_only(monkeypatch):
    _measuring(monkeypatch, lambda evidence: {"checks": len(evidence), "not finite": float("nan"), "label": "x"})
    assert engine.grader_numbers(_executed(_answers())) == {"checks": 12.0}
    code = engine.learner_code(nbformat.read(NOTEBOOK, as_version=4))
    mallory = _executed(_answers(), seed_of=_seed_of("mallory", code))
    assert engine.grader_numbers(mallory, _seed_of("alice", code)) == {}
    assert engine.grader_numbers(mallory, _seed_of("mallory", code)) == {"checks": 12.0}


def test_a_measure_that_fails_on_a_learners_records_gives_no_numbers_and_the_verdicts_still_decide(monkeypatch):
    def broken(evidence):
        raise TypeError("items of an unexpected shape")

    _measuring(monkeypatch, broken)
    nb = _executed(_answers(a=[9.0, 9.0]))
    assert engine.grader_numbers(nb) == {}
    engine.decide_notebook(nb)
    assert set(_failed(nb)) == {"test_a"}


def test_grading_replaces_numbers_a_submission_brings_in_its_metadata(monkeypatch):
    from course_tools.authoring.nbgrader_ext import DecideHiddenTests

    monkeypatch.setenv(engine.SECRET_ENV, SECRET.decode())
    resources = {"nbgrader": {"assignment": "01_pen_and_paper", "student": "alice", "notebook": "pen_and_paper"}}
    code = engine.learner_code(nbformat.read(NOTEBOOK, as_version=4))
    seed_of = DecideHiddenTests().seed_function(code, resources)
    forged = {"test_accuracy": 0.99}

    _measuring(monkeypatch, lambda evidence: {"checks": len(evidence)})
    nb = _executed(_answers(), seed_of=seed_of)
    nb.metadata[engine.NUMBERS_METADATA] = dict(forged)
    nb, _ = DecideHiddenTests().preprocess(nb, resources)
    assert nb.metadata[engine.NUMBERS_METADATA] == {"checks": 12.0} and _failed(nb) == {}

    _measuring(monkeypatch, lambda evidence: {})
    nb = _executed(_answers(), seed_of=seed_of)
    nb.metadata[engine.NUMBERS_METADATA] = dict(forged)
    nb, _ = DecideHiddenTests().preprocess(nb, resources)
    assert engine.NUMBERS_METADATA not in nb.metadata
