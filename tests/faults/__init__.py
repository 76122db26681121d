"""A Jepsen-style fault-injection harness for `segpost run` and `segpost fleet`.

- history.py: a seeded history (the command, its cameras, the faults and when they strike);
- driver.py: runs a history with real processes (subprocesses, a local Ray instance, real files,
  real signals, a real full disk) and watches it (progress, exits, drain after SIGTERM);
- check.py: the invariants, checked over the output files a history left.

tests/test_faults.py runs a few fixed seeds; bench/fault_histories.py runs many.
"""
