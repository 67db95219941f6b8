"""The fault matrix: JSON-lines histories of lab scenarios and the pure checker that judges them.

`history` records (status samples, injected faults, client requests, node log events),
`checker` turns a history into pass/fail checks with figures, `scenarios` drives real
`mesh-node` processes in network namespaces. Used by tests/lab/test_fault_matrix.py,
tests/unit/test_fault_checker.py, tests/unit/test_fault_sim.py and benchmarks/lab_load.py.
"""
