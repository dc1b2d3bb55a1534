"""The hidden tests, split at the kernel's edge.

- :mod:`course_tools.hidden.probes` runs in the learner's kernel (the only part
  of ``course_tools`` the grading sandbox mounts): it draws the hidden inputs
  from the cell's seed, calls the learner's code and records what came back.
- :mod:`course_tools.hidden.verdicts` runs in the grading process: it draws the
  same inputs, computes the expected values and decides right or wrong.
"""
