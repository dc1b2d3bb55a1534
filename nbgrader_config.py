"""nbgrader configuration of the MyTorch course.

Paths are relative to this file, so the course works from any checkout.
Settings follow measured nbgrader 0.9.6 behaviour (see the README's section
for course authors): warnings must not zero a correct answer, deleted test
cells come back, stubs say what to implement, feedback hides hidden tests.
"""

import os
import sys

COURSE_ROOT = os.path.dirname(os.path.abspath(__file__))
if COURSE_ROOT not in sys.path:
    sys.path.insert(0, COURSE_ROOT)

from nbgrader.preprocessors import (  # noqa: E402
    ClearHiddenTests,
    ClearMarkScheme,
    ClearOutput,
    CheckCellMetadata,
    AssignLatePenalties,
    ComputeChecksums,
    GetGrades,
    IgnorePattern,
    InstantiateTests,
    LimitOutput,
    LockCells,
    SaveAutoGrades,
    SaveCells,
)
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402

from course_tools.term.deadlines import LatePenaltyPerDay  # noqa: E402
from course_tools.authoring.nbgrader_ext import (  # noqa: E402
    ClearSolutionsNamed,
    DecideHiddenTests,
    HiddenTestSeeds,
    IncludeHeaderAfterTitle,
    SandboxedExecute,
    ScrubGraderText,
    ScrubHiddenTracebacks,
)

# Kernels started by nbgrader inherit this environment: one thread for BLAS and
# PyTorch (on small machines the defaults make run times swing by 50x and can
# trip the per-cell timeout). Nothing of the course is put on their import path:
# the grading kernel sees the probes of course_tools.hidden.probes only (see
# SandboxedExecute below).
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = "mytorch"
c.CourseDirectory.root = COURSE_ROOT

# Release stubs that name what to write; module-level answers become `None`.
c.ClearSolutions.code_stub = {
    "python": '# YOUR CODE HERE\nraise NotImplementedError("replace this line with your code")'
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Every release notebook opens with its title and goals, then the shared header: a
# read-only set-up cell (installs mytorch_lib on Colab only, silent elsewhere) and
# how-to-work notes. nbgrader opens this path as given, so it is made absolute.
c.IncludeHeaderAfterTitle.header = os.path.join(COURSE_ROOT, "source", "header.ipynb")
c.GenerateAssignment.preprocessors = [
    IncludeHeaderAfterTitle,
    InstantiateTests,
    LockCells,
    ClearSolutionsNamed,
    ClearOutput,
    CheckCellMetadata,
    ComputeChecksums,
    SaveCells,
    ClearHiddenTests,
    ClearMarkScheme,
    ComputeChecksums,
    CheckCellMetadata,
]

# Autograding: nbgrader's default steps, with three of ours. The kernel runs in
# the bubblewrap sandbox (it sees the learner's folder, mytorch_lib and the
# probes, nothing else); before it runs, every hidden cell gets a seed derived
# from the course secret, the learner and their code; after it has run, the
# verdicts are decided here, in the grading process, from what the probes
# recorded (course_tools/hidden/verdicts). The order matters: decisions come
# after IgnorePattern and before LimitOutput and SaveAutoGrades.
c.Autograde.autograde_preprocessors = [
    HiddenTestSeeds,
    SandboxedExecute,
    IgnorePattern,
    DecideHiddenTests,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
# Late submissions: each assignment's due date and each learner's extension live in
# the gradebook (`python -m course_tools deadline` / `extension`); autograde compares
# them with the submission's timestamp.txt. Each notebook then loses this share of
# the points it earned per started day late, never more than those points.
c.AssignLatePenalties.plugin_class = LatePenaltyPerDay
c.LatePenaltyPerDay.percent_per_day = 10.0
c.LatePenaltyPerDay.grace_minutes = 0.0

# The course secret the hidden inputs are derived from (created on first use,
# never committed; keep it while grades may be recomputed). The environment
# variable MYTORCH_GRADING_SECRET, when set, takes its place.
c.HiddenTestSeeds.secret_file = os.path.join(COURSE_ROOT, ".grading_secret")

# Execution while autograding: a cell may run 120 s (the PyTorch training
# cells are the longest, well under that single-threaded); a stuck cell is
# interrupted and the rest of the notebook still runs.
c.Execute.timeout = 120
c.Execute.startup_timeout = 60
c.Execute.interrupt_on_timeout = True

# Any stderr output zeroes a graded cell. Drop stderr blocks that are Python
# warnings (RuntimeWarning from NumPy, UserWarning from PyTorch, ...), so a
# harmless warning never costs a correct answer its points.
c.IgnorePattern.enabled = True
c.IgnorePattern.pattern = r"\w*Warning: |warnings\.warn\("

# A learner who deletes a locked test cell gets it back from the gradebook
# instead of a silent zero.
c.OverwriteCells.add_missing_cells = True

# Feedback: remove hidden test source and the tracebacks that would quote it,
# and any line of grader code a learner's cell printed (the kernel can read the
# probes, which run there).
c.GenerateFeedback.preprocessors = [
    GetGrades,
    ClearHiddenTests,
    ScrubHiddenTracebacks,
    ScrubGraderText,
    CSSHTMLHeaderPreprocessor,
]
