"""Authoring and release: notebook cells and their nbgrader metadata, the nbgrader
preprocessors of ``nbgrader_config.py``, ``release/``, the learner bundle, and the
example submissions the demo and the tests grade."""
