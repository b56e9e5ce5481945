"""Fault injection into the run directories of statistics, evaluation, export and int8
quantization: every file corrupted, truncated or deleted heals or is refused in one error line.

The cases, the faults and what must happen: tests/fault_injection.py."""
import fault_injection
import pytest

pytestmark = pytest.mark.slow
PROCEDURES = ('compute_stats', 'optimize_dataset', 'evaluate', 'export', 'quantize')


@pytest.fixture(scope="module")
def references(lenet5_teacher, tmp_path_factory):
    return fault_injection.build_references(PROCEDURES, lenet5_teacher,
                                            tmp_path_factory.mktemp("references"))


@pytest.mark.parametrize("procedure", PROCEDURES)
def test_damaged_run_files_heal_or_stop_cleanly(procedure, references, tmp_path, capfd):
    fault_injection.check_damage_cases(procedure, references, tmp_path, capfd)
