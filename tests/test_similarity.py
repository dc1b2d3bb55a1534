"""Similarity report and archive (``python -m course_tools similarity`` / ``archive``).

One synthetic class of the NumPy assignment, in a throwaway course:

- alice submits the reference solution of ``1_layers``; bob and erin submit correct answers
  written their own way (einsum, and loops with other NumPy idioms): the honest pairs;
- carol copies bob's ``1_layers`` with every name changed (``self`` and the parameters too),
  comments rewritten, independent statements reordered, saved as ``Copy of 1_layers.ipynb``
  by an editor that stripped the nbgrader metadata; one of her comments is an HTML injection;
- frank hands in the untouched release;
- dave copies the ``3_losses`` of a public solution site with names changed; the ``--against``
  folder of known public solutions holds that site's notebook (``<id>/<assignment>/*.ipynb``) and
  a forum post of the same code (``<id>/*.ipynb``); grace hands in the reference ``3_losses``.

The release's own code never counts, so only what learners wrote is compared.
"""

from __future__ import annotations

import csv
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pytest

from course_tools.__main__ import main as cli
from course_tools.course import Workspace, notebooks
from course_tools.term.similarity import (AGAINST_PREFIX, ARCHIVE_FORMAT, CSV_COLUMNS, DEFAULT_THRESHOLD, Learner,
                                     PairScore, Settings, SimilarityResult, boilerplate_hashes, document,
                                     fingerprint, notebook_code, own_code, pair_scores, release_notebooks,
                                     run_similarity, write_report)
from course_tools.authoring.submissions import learner_notebook, write_submission

ASSIGNMENT = "02_numpy_library"
#: notebooks of the assignment (each is compared on its own)
NOTEBOOKS = len(notebooks(ASSIGNMENT))
XSS = "</script><script>alert(1)</script>"

# --------------------------------------------------------------------------- the answers

#: bob: a correct 1_layers written with einsum and np.where
BOB = {
    "Linear.__init__": """
        self.W = np.zeros(shape=(out_features, in_features), dtype=float)
        self.b = np.zeros(shape=(out_features, 1), dtype=float)
    """,
    "Linear.forward": """
        self.A = A
        self.N = len(A)
        return np.einsum("nc,oc->no", A, self.W) + self.b.reshape(1, -1)
    """,
    "Linear.backward": """
        self.dLdW = np.einsum("no,nc->oc", dLdZ, self.A)
        self.dLdb = dLdZ.sum(axis=0).reshape(-1, 1)
        return np.einsum("no,oc->nc", dLdZ, self.W)
    """,
    "Sigmoid.forward": """
        out = np.empty_like(Z, dtype=float)
        pos = Z >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-Z[pos]))
        ez = np.exp(Z[~pos])
        out[~pos] = ez / (1.0 + ez)
        self.A = out
        return out
    """,
    "Sigmoid.backward": "return dLdA * self.A * (1.0 - self.A)",
    "Tanh.forward": """
        e = np.exp(-2.0 * np.abs(Z))
        t = (1.0 - e) / (1.0 + e)
        self.A = np.where(Z < 0, -t, t)
        return self.A
    """,
    "Tanh.backward": "return dLdA - dLdA * self.A ** 2",
    "ReLU.forward": """
        self.A = np.where(Z > 0, Z, 0.0)
        return self.A
    """,
    "ReLU.backward": "return np.where(self.A > 0, dLdA, 0.0)",
    "GELU.forward": """
        self.Z = Z
        self.cdf = 0.5 * (1.0 + erf(Z / np.sqrt(2.0)))
        self.A = Z * self.cdf
        return self.A
    """,
    "GELU.backward": """
        pdf = np.exp(-0.5 * self.Z ** 2) / np.sqrt(2.0 * np.pi)
        return dLdA * (self.cdf + self.Z * pdf)
    """,
    "Swish.forward": """
        self.Z = Z
        self.sig = Sigmoid().forward(self.beta * Z)
        self.A = self.sig * Z
        return self.A
    """,
    "Swish.backward": """
        grad_sig = self.sig * (1.0 - self.sig)
        self.dLdbeta = float(np.sum(dLdA * self.Z ** 2 * grad_sig))
        return dLdA * (self.sig + self.beta * self.Z * grad_sig)
    """,
    "Softmax.forward": """
        Z = Z - np.amax(Z, axis=1).reshape(-1, 1)
        self.A = np.exp(Z) / np.exp(Z).sum(axis=1).reshape(-1, 1)
        return self.A
    """,
    "Softmax.backward": """
        inner = np.einsum("nc,nc->n", dLdA, self.A)[:, None]
        return self.A * dLdA - self.A * inner
    """,
}

#: erin: a correct 1_layers with explicit loops and sums, activations built from each other
ERIN = {
    "Linear.__init__": """
        self.W = np.zeros([out_features, in_features])
        self.b = np.zeros([out_features, 1])
    """,
    "Linear.forward": """
        self.A, self.N = A, A.shape[0]
        out = np.zeros((self.N, self.W.shape[0]))
        for n in range(self.N):
            out[n] = self.W.dot(A[n]) + self.b[:, 0]
        return out
    """,
    "Linear.backward": """
        self.dLdW = sum(np.outer(dLdZ[n], self.A[n]) for n in range(self.N))
        self.dLdb = np.sum(dLdZ, axis=0, keepdims=True).T
        return dLdZ.dot(self.W)
    """,
    "Sigmoid.forward": """
        self.A = 0.5 * (1.0 + np.tanh(0.5 * Z))
        return self.A
    """,
    "Sigmoid.backward": """
        s = self.A
        return dLdA * s * (1 - s)
    """,
    "Tanh.forward": """
        s = Sigmoid().forward(2 * Z)
        self.A = 2 * s - 1
        return self.A
    """,
    "Tanh.backward": "return (1 - np.square(self.A)) * dLdA",
    "ReLU.forward": """
        self.A = Z.copy()
        self.A[self.A < 0] = 0
        return self.A
    """,
    "ReLU.backward": """
        grad = dLdA.copy()
        grad[self.A <= 0] = 0
        return grad
    """,
    "GELU.forward": """
        self.Z = Z
        Phi = (1 + erf(Z / np.sqrt(2))) / 2
        self.A = Z * Phi
        return self.A
    """,
    "GELU.backward": """
        Z = self.Z
        Phi = (1 + erf(Z / np.sqrt(2))) / 2
        phi = np.exp(-Z ** 2 / 2) / np.sqrt(2 * np.pi)
        return dLdA * (Phi + Z * phi)
    """,
    "Swish.forward": """
        self.Z = Z
        e = np.exp(-np.abs(self.beta * Z))
        self.sig = np.where(self.beta * Z >= 0, 1 / (1 + e), e / (1 + e))
        self.A = Z * self.sig
        return self.A
    """,
    "Swish.backward": """
        s, Z = self.sig, self.Z
        ds = s * (1 - s)
        self.dLdbeta = float((dLdA * Z * Z * ds).sum())
        return dLdA * (s + self.beta * Z * ds)
    """,
    "Softmax.forward": """
        shifted = Z - Z.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        self.A = e / e.sum(axis=1, keepdims=True)
        return self.A
    """,
    "Softmax.backward": """
        dLdZ = np.empty_like(dLdA)
        for n, (a, g) in enumerate(zip(self.A, dLdA)):
            dLdZ[n] = a * g - a * np.dot(a, g)
        return dLdZ
    """,
}

#: carol: bob's answers, with independent statements reordered and comments of her own
CAROL = dict(BOB, **{
    "Linear.__init__": """
        # biases first, then the weights
        self.b = np.zeros(shape=(out_features, 1), dtype=float)
        self.W = np.zeros(shape=(out_features, in_features), dtype=float)
    """,
    "Linear.forward": """
        self.N = len(A)   # batch size
        self.A = A
        return np.einsum("nc,oc->no", A, self.W) + self.b.reshape(1, -1)
    """,
    "Linear.backward": """
        # gradients of the parameters, then of the input
        self.dLdb = dLdZ.sum(axis=0).reshape(-1, 1)
        self.dLdW = np.einsum("no,nc->oc", dLdZ, self.A)
        return np.einsum("no,oc->nc", dLdZ, self.W)
    """,
    "Sigmoid.forward": f"""
        # {XSS}
        ez = np.exp(Z[~(Z >= 0)])
        out = np.empty_like(Z, dtype=float)
        pos = Z >= 0
        out[pos] = 1.0 / (1.0 + np.exp(-Z[pos]))
        out[~pos] = ez / (1.0 + ez)
        self.A = out
        return out
    """,
    "Sigmoid.backward": "return dLdA * self.A * (1.0 - self.A)  # chain rule",
    "Tanh.forward": """
        e = np.exp(-2.0 * np.abs(Z))  # stays in (0, 1]
        t = (1.0 - e) / (1.0 + e)
        self.A = np.where(Z < 0, -t, t)
        return self.A
    """,
    "GELU.forward": """
        self.cdf = 0.5 * (1.0 + erf(Z / np.sqrt(2.0)))
        self.Z = Z
        self.A = Z * self.cdf
        return self.A
    """,
    "GELU.backward": """
        pdf = np.exp(-0.5 * self.Z ** 2) / np.sqrt(2.0 * np.pi)  # normal density
        return dLdA * (self.cdf + self.Z * pdf)
    """,
    "Swish.forward": """
        self.sig = Sigmoid().forward(self.beta * Z)
        self.Z = Z
        self.A = self.sig * Z
        return self.A
    """,
})
#: carol's new names for every name she could choose: ``self``, the parameters, the locals and the
#: attributes the tests do not read (``.name``); the attributes the tests read keep their names
CAROL_NAMES = {"self": "me", "A": "inp", "Z": "x", "dLdA": "g", "dLdZ": "up", "out": "result",
               "pos": "mask", "ez": "neg_exp", "e": "ex", "t": "th", "pdf": "density", "grad_sig": "slope",
               "inner": "rowdot", ".cdf": "gauss_cdf", ".sig": "sigm", ".Z": "cached_input"}

#: a public solution site's 3_losses (the --against folder dave copies from)
PUBLIC_LOSSES = {
    "MSELoss.forward": """
        self.A, self.Y = A, Y
        diff = A - Y
        return float(np.mean(diff ** 2))
    """,
    "MSELoss.backward": "return 2.0 * (self.A - self.Y) / self.A.size",
    "CrossEntropyLoss.forward": """
        self.A, self.Y = A, Y
        m = A.max(axis=1, keepdims=True)
        logsumexp = m + np.log(np.exp(A - m).sum(axis=1, keepdims=True))
        self.S = np.exp(A - logsumexp)
        return float(-(Y * (A - logsumexp)).sum() / A.shape[0])
    """,
    "CrossEntropyLoss.backward": "return (self.S - self.Y) / self.A.shape[0]",
}
DAVE_NAMES = {"self": "this", "diff": "err", "m": "row_max", "logsumexp": "lse", "A": "logits", "Y": "target"}

_STUB = re.compile(r'^(\s*)raise NotImplementedError\("(\w+\.\w+) is not written yet')


def filled(release_dir: Path, notebook: str, bodies: dict[str, str], names: dict[str, str] | None = None) -> Any:
    """The release notebook with each method stub replaced by its body in ``bodies`` (``Class.method``).

    ``names`` renames identifiers in the bodies and ``def`` lines, as a copier's search and replace would.
    """
    nb = learner_notebook(ASSIGNMENT, notebook, filled=False, release_dir=release_dir)
    for cell in nb.cells:
        lines = []
        for line in cell.source.split("\n"):
            stub = _STUB.match(line)
            if line.strip() == "# YOUR CODE HERE":
                continue
            if stub:
                line = _renamed(textwrap.indent(textwrap.dedent(bodies[stub.group(2)]).strip("\n"), stub.group(1)),
                                names)
            elif line.lstrip().startswith("def "):
                line = _renamed(line, names)
            lines.append(line)
        cell.source = "\n".join(lines)
    return nb


def _renamed(text: str, names: dict[str, str] | None) -> str:
    """``text`` with names replaced: ``{"x": "y"}`` for names, ``{".x": "y"}`` for attributes."""
    for old, new in (names or {}).items():
        if old.startswith("."):
            text = re.sub(rf"\.{re.escape(old[1:])}\b", f".{new}", text)
        else:
            text = re.sub(rf"(?<![.\"'])\b{re.escape(old)}\b", new, text)
    return text


def _strip_metadata(nb: Any) -> Any:
    for cell in nb.cells:
        cell.metadata.pop("nbgrader", None)
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp("similarity-course"))
    ws.generate(ASSIGNMENT)
    release = ws.release_dir
    submissions = {
        "alice": {"1_layers": learner_notebook(ASSIGNMENT, "1_layers", release_dir=release)},
        "bob": {"1_layers": filled(release, "1_layers", BOB)},
        "erin": {"1_layers": filled(release, "1_layers", ERIN)},
        "carol": {"Copy of 1_layers": _strip_metadata(filled(release, "1_layers", CAROL, CAROL_NAMES))},
        "frank": {name: learner_notebook(ASSIGNMENT, name, filled=False, release_dir=release)
                  for name in ("1_layers", "3_losses")},
        "dave": {"3_losses": filled(release, "3_losses", PUBLIC_LOSSES, DAVE_NAMES)},
        "grace": {"3_losses": learner_notebook(ASSIGNMENT, "3_losses", release_dir=release)},
    }
    for student, nbs in submissions.items():
        write_submission(ws.path("submitted", student, ASSIGNMENT), nbs, release_folder=release / ASSIGNMENT)
    public = ws.root / "public"
    write_submission(public / "solution_site" / ASSIGNMENT, {"3_losses": filled(release, "3_losses", PUBLIC_LOSSES)})
    write_submission(public / "forum_post", {"3_losses": filled(release, "3_losses", PUBLIC_LOSSES)})
    return ws


@pytest.fixture(scope="module")
def result(course: Workspace) -> SimilarityResult:
    return run_similarity(course.root, ASSIGNMENT, release_dir=course.release_dir, against=[course.root / "public"],
                          workers=2)


def _pair(result: SimilarityResult, notebook: str, a: str, b: str) -> PairScore:
    for pair in result.pairs:
        if pair.notebook == notebook and {pair.learner_a, pair.learner_b} == {a, b}:
            return pair
    raise AssertionError(f"no pair {a}/{b} in {notebook}")


# --------------------------------------------------------------------------- extraction


def test_own_code_drops_what_the_release_contained():
    release = 'class Relu:\n    """Doc."""\n\n    def forward(self, Z):\n        """Z: N x C."""\n' \
              '        # YOUR CODE HERE\n        raise NotImplementedError("Relu.forward is not written yet")\n'
    submitted = 'class Relu:\n    """Doc."""\n\n    def forward(self, Z):\n        """Z: N x C."""\n' \
                '        # clip below at zero\n        self.A = np.maximum(0, Z)\n        return self.A\n'
    assert own_code(release, submitted) == "# clip below at zero\nself.A = np.maximum(0, Z)\nreturn self.A"
    assert own_code(release, release) == ""
    moved = submitted.replace("class Relu:", "import numpy as np\nclass Relu:")
    assert own_code(release, moved).splitlines()[0] == "import numpy as np"


def test_untouched_release_has_no_code_and_scores_zero_with_everyone(course: Workspace, result: SimilarityResult):
    releases = release_notebooks(course.release_dir, ASSIGNMENT)
    assert all(notebook_code(nb, nb) == {} for nb in releases.values())
    frank = [p for p in result.pairs if "frank" in (p.learner_a, p.learner_b)]
    assert len(frank) == NOTEBOOKS * (6 + 2)  # every notebook: six classmates and two public entries
    assert all(p.similarity_a == p.similarity_b == 0 and p.overlap_tokens == 0 for p in frank)


def test_preflight_repair_recovers_a_renamed_notebook_without_metadata(result: SimilarityResult):
    carol = _pair(result, "1_layers", "bob", "carol")
    assert carol.overlap_tokens > 0, "carol saved 'Copy of 1_layers.ipynb' without nbgrader metadata; " \
                                     "preflight must grade it as 1_layers and restore the metadata"


# --------------------------------------------------------------------------- scores


def test_copy_with_every_name_changed_is_flagged_at_the_top(result: SimilarityResult):
    copy = _pair(result, "1_layers", "bob", "carol")
    assert copy.flagged and copy.score >= 0.75, copy
    top = result.flagged["1_layers"][0].pair
    assert (top.learner_a, top.learner_b) == ("bob", "carol")
    assert copy.score == max(p.score for p in result.pairs if p.notebook == "1_layers")


def test_honest_pairs_stay_below_the_threshold(result: SimilarityResult):
    for a, b in (("alice", "bob"), ("alice", "erin"), ("bob", "erin"), ("alice", "carol"), ("carol", "erin")):
        pair = _pair(result, "1_layers", a, b)
        assert pair.score < DEFAULT_THRESHOLD and not pair.flagged, pair
    assert not _pair(result, "3_losses", "dave", "grace").flagged
    flagged = {(p.notebook, p.learner_a, p.learner_b) for p in result.pairs if p.flagged}
    assert flagged == {("1_layers", "bob", "carol"),
                       ("3_losses", "dave", f"{AGAINST_PREFIX}public/solution_site"),
                       ("3_losses", "dave", f"{AGAINST_PREFIX}public/forum_post")}


def test_copy_from_an_against_folder_is_flagged_against_that_folder(result: SimilarityResult):
    assert result.against == 2
    for entry in ("solution_site", "forum_post"):  # <id>/<assignment>/*.ipynb and <id>/*.ipynb
        assert _pair(result, "3_losses", "dave", f"{AGAINST_PREFIX}public/{entry}").flagged
        assert not _pair(result, "3_losses", "grace", f"{AGAINST_PREFIX}public/{entry}").flagged
    assert not any(p.learner_a.startswith(AGAINST_PREFIX) for p in result.pairs), "entries are not compared together"


def test_scores_equal_copydetects_own_comparison_and_do_not_depend_on_workers(course: Workspace,
                                                                               result: SimilarityResult):
    from copydetect import compare_files

    serial = run_similarity(course.root, ASSIGNMENT, release_dir=course.release_dir,
                            against=[course.root / "public"], workers=1)
    assert [(p.notebook, p.learner_a, p.learner_b, p.overlap_tokens) for p in serial.pairs] == \
        [(p.notebook, p.learner_a, p.learner_b, p.overlap_tokens) for p in result.pairs]
    settings = Settings()
    release = release_notebooks(course.release_dir, ASSIGNMENT)["1_layers"]
    codes = {"alice": learner_notebook(ASSIGNMENT, "1_layers", release_dir=course.release_dir),
             "bob": filled(course.release_dir, "1_layers", BOB),
             "carol": filled(course.release_dir, "1_layers", CAROL, CAROL_NAMES),
             "erin": filled(course.release_dir, "1_layers", ERIN)}
    learners = [Learner(name, {"1_layers": notebook_code(release, json.loads(nbformat.writes(nb)))})
                for name, nb in codes.items()]
    boilerplate = boilerplate_hashes(release, settings)
    prints = [fingerprint(document(learner.notebooks["1_layers"]), settings, boilerplate) for learner in learners]
    pairs = pair_scores("1_layers", learners, prints, settings)
    assert len(pairs) == 6
    position = {learner.label: i for i, learner in enumerate(learners)}
    for pair in pairs:
        a, b = position[pair.learner_a], position[pair.learner_b]
        overlap, (sim_a, sim_b), _slices = compare_files(prints[a], prints[b])
        assert (pair.overlap_tokens, pair.similarity_a, pair.similarity_b) == \
            pytest.approx((overlap, sim_a, sim_b)), pair


# --------------------------------------------------------------------------- report


def test_report_page_and_csv(result: SimilarityResult, tmp_path: Path):
    html_path, csv_path = write_report(result, tmp_path / "report")
    page = html_path.read_text(encoding="utf-8")
    assert "a reason to look, not a verdict" in page
    layers = page[page.index("<h2>1_layers</h2>"):page.index("<h2>2_mlp</h2>")]
    assert "1. bob and carol" in layers and "<mark>" in layers
    assert page.index('<div class="pair">') < page.index("1. bob and carol") < page.index("<h2>3_losses</h2>")
    first_row = re.search(r"<tr><td>(\w+)</td><td>([^<]+)</td><td>([^<]+)</td>", page)
    assert first_row and first_row.groups() == ("1_layers", "bob", "carol"), "the copy is the report's first row"
    assert XSS not in page and "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == NOTEBOOKS * (7 * 6 // 2 + 7 * 2)  # per notebook: class pairs and each learner against 2 entries
    flagged = {(r["notebook"], r["learner_a"], r["learner_b"]) for r in rows if r["flagged"]}
    assert ("1_layers", "bob", "carol") in flagged and len(flagged) == result.flagged_count == 3
    assert not any(r["flagged"] for r in rows if float(r["similarity_a"]) < 0.6 > float(r["similarity_b"]))


def test_command_line_summary_and_nothing_written_under_submitted(course: Workspace, tmp_path: Path, capsys):
    submitted = course.root / "submitted"
    before = {p: p.stat().st_mtime_ns for p in submitted.rglob("*")}
    out = tmp_path / "cli-report"
    code = cli(["similarity", ASSIGNMENT, "--root", str(course.root), "--release-dir", str(course.release_dir),
                "--out", str(out), "--threshold", "0.6", "-j", "1"])
    printed = capsys.readouterr().out
    assert code == 0
    assert (f"7 learners, {NOTEBOOKS} notebooks: {NOTEBOOKS * 21} pairs compared, 1 flagged at similarity >= 0.6"
            in printed)
    assert str(out / "report.html") in printed and (out / "scores.csv").is_file()
    assert {p: p.stat().st_mtime_ns for p in submitted.rglob("*")} == before


# --------------------------------------------------------------------------- archive


def test_archive_round_trip_finds_the_copy_next_term(course: Workspace, tmp_path: Path, capsys):
    archive = tmp_path / "term1"
    assert cli(["archive", ASSIGNMENT, "--root", str(course.root), "--release-dir", str(course.release_dir),
                "--out", str(archive)]) == 0
    files = sorted(archive.glob("*.json"))
    assert [f.stem for f in files] == ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]
    for path in files:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert set(record) == {"format", "assignment", "learner", "notebooks"}
        assert record["format"] == ARCHIVE_FORMAT and record["learner"] == path.stem
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"score|points|grade\b|outputs|execution_count", text)
    bob = json.loads((archive / "bob.json").read_text(encoding="utf-8"))
    assert "np.einsum" in bob["notebooks"]["1_layers"]["linear"]
    assert "NotImplementedError" not in json.dumps(bob) and "YOUR CODE HERE" not in json.dumps(bob)
    assert json.loads((archive / "frank.json").read_text(encoding="utf-8"))["notebooks"] == {}

    term2 = Workspace(tmp_path / "term2", release_dir=course.release_dir)
    heidi = filled(course.release_dir, "1_layers", CAROL, {"self": "obj", "out": "buf", "pos": "nonneg"})
    write_submission(term2.path("submitted", "heidi", ASSIGNMENT), {"1_layers": heidi},
                     release_folder=course.release_dir / ASSIGNMENT)
    capsys.readouterr()
    assert cli(["similarity", ASSIGNMENT, "--root", str(term2.root), "--release-dir", str(course.release_dir),
                "--against", str(archive), "--out", str(tmp_path / "term2-report")]) == 0
    assert "1 learners and 7 entries of --against folders" in capsys.readouterr().out
    with open(tmp_path / "term2-report" / "scores.csv", newline="", encoding="utf-8") as handle:
        flagged = {(r["learner_a"], r["learner_b"]) for r in csv.DictReader(handle) if r["flagged"]}
    assert flagged == {("heidi", f"{AGAINST_PREFIX}term1/bob"), ("heidi", f"{AGAINST_PREFIX}term1/carol")}


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case", ["unknown assignment", "no submissions", "missing against", "empty against",
                                  "out inside submitted", "bad threshold"])
def test_bad_input_gets_a_clear_error(course: Workspace, tmp_path: Path, capsys, case: str):
    root, assignment = course.root, ASSIGNMENT
    extra: list[str] = []
    if case == "unknown assignment":
        assignment, expected = "02_numpy_libary", ["unknown assignment '02_numpy_libary'", "02_numpy_library",
                                                   "--release-dir"]
    elif case == "no submissions":
        root = Workspace(tmp_path / "empty", release_dir=course.release_dir).root
        expected = [f"no submissions of {ASSIGNMENT}", "nbgrader collect", "--root"]
    elif case == "missing against":
        extra, expected = ["--against", str(tmp_path / "nowhere")], ["nowhere does not exist", "archive"]
    elif case == "empty against":
        (tmp_path / "empty_folder").mkdir()
        extra, expected = ["--against", str(tmp_path / "empty_folder")], ["no archive files and no notebooks",
                                                                          "<id>/*.ipynb"]
    elif case == "out inside submitted":
        extra, expected = ["--out", str(course.root / "submitted" / "report")], ["never writes to",
                                                                                "outside submitted/"]
    else:
        extra, expected = ["--threshold", "60"], ["--threshold 60 is outside (0, 1]", "0.6"]
    if "--out" not in extra:
        extra += ["--out", str(tmp_path / "report")]
    code = cli(["similarity", assignment, "--root", str(root), "--release-dir", str(course.release_dir), *extra])
    message = capsys.readouterr().err
    assert code == 2
    for part in expected:
        assert part in message, message
    assert not (tmp_path / "report").exists()


def test_archive_refuses_a_folder_holding_another_assignment(course: Workspace, tmp_path: Path, capsys):
    folder = tmp_path / "archive"
    folder.mkdir()
    other = {"format": ARCHIVE_FORMAT, "assignment": "01_pen_and_paper", "learner": "zoe", "notebooks": {}}
    (folder / "zoe.json").write_text(json.dumps(other), encoding="utf-8")
    code = cli(["archive", ASSIGNMENT, "--root", str(course.root), "--release-dir", str(course.release_dir),
                "--out", str(folder)])
    assert code == 2
    assert "already holds the archive of another assignment (zoe.json)" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["zoe.json"]
