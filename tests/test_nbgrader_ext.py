"""The course's nbgrader preprocessors: named stubs and leak-free tracebacks."""

from __future__ import annotations

import nbformat
import pytest

from course_tools.authoring.cells import KERNELSPEC, solution
from course_tools.authoring.cells import tests as graded_cell
from course_tools.course import RELEASE_DIR
from course_tools.authoring.nbgrader_ext import ClearSolutionsNamed, ScrubHiddenTracebacks, answer_placeholders, enclosing_name


def _clear(source: str) -> str:
    nb = nbformat.v4.new_notebook(cells=[solution("cell", source)],
                                  metadata={"kernelspec": KERNELSPEC})
    ClearSolutionsNamed().preprocess(nb, {})
    return nb.cells[0].source


def test_method_stub_names_class_and_method():
    out = _clear("class Linear:\n    def forward(self, A):\n        ### BEGIN SOLUTION\n"
                 "        self.A = A\n        return A @ self.W.T\n        ### END SOLUTION\n")
    assert 'raise NotImplementedError("Linear.forward is not written yet' in out
    assert "        raise NotImplementedError" in out  # keeps the method's indentation
    assert "self.W.T" not in out


def test_function_and_loose_code_stubs():
    assert '"train is not written yet' in _clear("def train(model):\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION")
    loose = _clear("for i in range(3):\n    ### BEGIN SOLUTION\n    print(i)\n    ### END SOLUTION")
    assert "the code of cell 'cell' is not written yet" in loose


def test_module_level_answers_become_none_placeholders():
    out = _clear("# a, a list of 2 numbers\n### BEGIN SOLUTION\na = [0.3, 0.24]\nb = 2\n### END SOLUTION")
    assert out.split("\n")[1:] == ["a = None  # replace None with your answer", "b = None  # replace None with your answer"]


@pytest.mark.parametrize("region, expected", [(["x = 1", "y = x + 1"], ["x", "y"]), (["x = 1", "print(x)"], None),
                                              (["x.attr = 1"], None), (["a, b = 1, 2"], None), (["(syntax"], None)])
def test_answer_placeholders(region, expected):
    assert answer_placeholders(region) == expected


def test_enclosing_name_skips_decorators_and_nested_blocks():
    lines = ["class Softmax:", "    @staticmethod", "    def backward(dLdA):", "        for row in dLdA:"]
    assert enclosing_name(lines, 12) == "Softmax.backward"
    assert enclosing_name(["x = 1"], 4) is None


def test_release_answers_of_pen_and_paper_are_none_placeholders():
    nb = nbformat.read(RELEASE_DIR / "01_pen_and_paper" / "pen_and_paper.ipynb", as_version=4)
    answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert len(answers) == 12
    for cell in answers:
        assert cell.source.split("\n")[-1].endswith("= None  # replace None with your answer"), cell.source


def test_scrub_hidden_tracebacks_keeps_only_the_message():
    cell = graded_cell("test_x", '"""x"""\nassert f(2) == 5, "f(2) should be 5"', 1)
    cell.outputs = [nbformat.v4.new_output("error", ename="AssertionError", evalue="f(2) should be 5",
                                           traceback=["Traceback", "assert f(2) == 5, ...  # hidden line"])]
    nb = nbformat.v4.new_notebook(cells=[cell])
    ScrubHiddenTracebacks().preprocess(nb, {})
    assert nb.cells[0].outputs[0].traceback == ["AssertionError: f(2) should be 5"]
