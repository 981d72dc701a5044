"""The benchmark suite: ``python -m bench`` starts the stack, loads it, and reports.

See bench/README.md for what is measured and how to read the report.
"""
