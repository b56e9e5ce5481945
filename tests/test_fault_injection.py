"""Fault injection into the run directories of the training and synthesis procedures: every
file corrupted, truncated or deleted heals or is refused in one error line.

The cases, the faults and what must happen: tests/fault_injection.py."""
import fault_injection

references, test_damaged_run_files_heal_or_stop_cleanly = fault_injection.tests_for(
    ('train', 'distill', 'data_impressions', 'zero_shot', 'transition_curves'))
