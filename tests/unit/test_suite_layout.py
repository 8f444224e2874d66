"""The test suite itself: `make test` collects every tier in one pytest process."""

from collections import defaultdict
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent


def test_no_two_test_files_share_a_name_across_tiers() -> None:
    # The tiers are plain folders on sys.path (no packages), so two files with one name make
    # the whole run stop at collection, though each tier passes when run alone.
    where = defaultdict(list)
    for path in TESTS.rglob("test_*.py"):
        where[path.name].append(str(path.relative_to(TESTS)))
    shared = {name: paths for name, paths in where.items() if len(paths) > 1}
    assert not shared, f"test files sharing a name: {shared}"
