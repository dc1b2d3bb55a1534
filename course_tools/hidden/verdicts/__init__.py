"""Verdicts: decide, in the grading process, what the probes recorded in the kernel.

One module per notebook, mirroring :mod:`course_tools.hidden.probes`: its
``check_<behaviour>(evidence)`` raises :class:`.kit.Wrong` with the learner's
message or returns for a right answer. :mod:`.engine` connects them to
nbgrader; :mod:`.reference` holds the NumPy reference components. Never
mounted into the grading sandbox.
"""
