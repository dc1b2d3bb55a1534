"""Instructor tooling around nbgrader for the MyTorch course.

Not shipped to learners: it holds the reference components that hidden tests
swap in, and the commands that release, check and grade the course. Run it
from the course root with ``python -m course_tools --help``.
"""
