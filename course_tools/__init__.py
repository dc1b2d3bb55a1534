"""Instructor tooling around nbgrader for the MyTorch course.

Not shipped to learners: it holds the hidden tests (``course_tools.hidden``:
probes that run in the grading sandbox, verdicts that never enter it) and the
commands that release, check and grade the course. Run it from the course root
with ``python -m course_tools --help``.
"""
