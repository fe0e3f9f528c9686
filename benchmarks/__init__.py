"""Benchmarks of retry_transport side by side with its peers (run by hand, not by the tests).

Run ``python -m benchmarks.run`` (or ``python benchmarks/run.py``); ``--quick`` for a short
smoke run. Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
"""
