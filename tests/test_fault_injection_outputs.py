"""Fault injection into the run directories of statistics, evaluation, export and int8
quantization: every file corrupted, truncated or deleted heals or is refused in one error line.

The cases, the faults and what must happen: tests/fault_injection.py."""
import fault_injection

references, test_damaged_run_files_heal_or_stop_cleanly = fault_injection.tests_for(
    ('compute_stats', 'optimize_dataset', 'evaluate', 'export', 'quantize'))
