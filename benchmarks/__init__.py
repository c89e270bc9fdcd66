"""Speed and accuracy benchmarks (not run by the tests).

``python -m benchmarks --list`` lists them; each is also a script,
``.venv/bin/python benchmarks/bench_<module>.py``, writing ``benchmarks/results/<module>.{json,md}``.
"""
