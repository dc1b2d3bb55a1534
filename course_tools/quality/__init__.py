"""Course-quality tools: mutation testing of the hidden tests, grading and similarity
benchmarks, the PyTorch notebooks' baselines, and the builders of the grader's data."""
