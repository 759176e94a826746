"""`make bench`: speed and memory of the app against the loopback stand-ins (dev tooling, never deployed).

bench/__main__.py runs the cases and writes docs/benchmarks.md; bench/child.py is what runs inside the
fresh processes that stand for a Functions worker.
"""
