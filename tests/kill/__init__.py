"""The kill harness of issue 14: run a real ``certmgr`` process, SIGKILL it just before its k-th file or
database mutation (an LD_PRELOAD shim, shim.c), check the crash-safety invariants (invariants.py) without
repairing, run the follow-up command, check again (scenarios.py). Used by tests/test_kill.py (a sample of
kill points) and by ``scripts/bench.py kill`` (every kill point)."""
