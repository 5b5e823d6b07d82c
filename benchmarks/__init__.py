"""jacnet's benchmarks: ratios against the peers (PyTorch, scikit-learn) in the same run.

Run ``python -m benchmarks.run`` (``make bench``); see ``benchmarks/README.md``.
"""
