"""Grader-side code that hidden tests import while autograding.

Reference components and expected-value calculators live here, outside the
notebooks and outside ``mytorch_lib``, so they never reach learners. Code in
this package runs inside the learner's kernel, after the learner's cells: it
avoids names a learner could have shadowed or patched (see ``integrity``).
"""
