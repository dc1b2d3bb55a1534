"""Probes: the grader code a hidden test cell runs in the learner's kernel.

One module per notebook; each ``check_<behaviour>(namespace, seed=None)`` draws
hidden inputs from ``seed`` (its ``cases_<behaviour>`` function), runs the
learner's code on them and publishes the record (:mod:`.kit`). This package is
the only part of ``course_tools`` mounted into the grading sandbox: it holds no
reference implementation, expected value, label or comparison.
"""
