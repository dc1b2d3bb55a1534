"""The grading engine: one submission graded in a sandbox (engine), many through a scheduler.

- :mod:`.engine`: preflight, sandboxed nbgrader autograde per notebook, a typed record;
- :mod:`.class_grading`: ``python -m course_tools grade``: plan, schedule, summary, CSV;
- :mod:`.preflight`, :mod:`.sandbox`, :mod:`.sandbox_launcher`: what the engine runs;
- :mod:`.execute`: run a notebook outside nbgrader (baselines, benchmark);
- :mod:`.export`: summary table and CSV of a graded assignment.
"""
