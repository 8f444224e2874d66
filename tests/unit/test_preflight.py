"""Symbolic links out of the work directory are refused at submission (reliability item 7): the
container sees the work directory and nothing else, so such a link fails inside the job."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcsched.errors import ValidationError
from hpcsched.planning import preflight
from hpcsched.planning.preflight import check_workdir_tree


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "work" / "data").mkdir(parents=True)
    (tmp_path / "work" / "train.py").write_text("print('hi')\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "train.py").write_text("print('elsewhere')\n")
    return tmp_path / "work"


def check(work: Path, script: str = "train.py", skip: tuple[str, ...] = ()) -> bool:
    return check_workdir_tree(str(work), str(work / script), skip)


def test_a_work_directory_without_links_out_passes(work: Path) -> None:
    (work / "data" / "same.txt").symlink_to("../train.py")  # relative, inside
    (work / "here").symlink_to(work / "data")  # absolute, inside
    (work / "loop").symlink_to(".")  # a link to a directory is never followed
    check(work)


def test_a_script_that_is_a_link_out_of_the_work_directory_is_refused(work: Path) -> None:
    (work / "linked.py").symlink_to(work.parent / "outside" / "train.py")
    with pytest.raises(ValidationError, match=r"^SCRIPT: .*linked\.py is a symbolic link to .*outside/train\.py, "
                                              r"outside the work directory"):
        check(work, "linked.py")


def test_a_script_below_a_linked_directory_out_of_the_work_directory_is_refused(work: Path) -> None:
    (work / "code").symlink_to(work.parent / "outside")
    with pytest.raises(ValidationError, match=r"^SCRIPT: .*code/train\.py resolves to .*outside/train\.py"):
        check(work, "code/train.py")


def test_a_link_out_of_the_work_directory_is_refused_naming_link_target_and_remedy(work: Path) -> None:
    link = work / "data" / "shared"
    link.symlink_to(work.parent / "outside")
    with pytest.raises(ValidationError) as info:
        check(work)
    message = str(info.value)
    assert message.startswith(f"--workdir: {link} is a symbolic link to {work.parent / 'outside'}, outside the "
                              f"work directory {work}")
    assert "copy the data into the work directory, or pass a --workdir that contains" in message


def test_a_dangling_link_out_of_the_work_directory_is_refused(work: Path) -> None:
    (work / "gone").symlink_to("/nonexistent/dataset")
    with pytest.raises(ValidationError, match="gone is a symbolic link to /nonexistent/dataset"):
        check(work)


def test_the_jobs_directory_and_virtual_environments_are_left_out(work: Path) -> None:
    (work / "jobs" / "s-1").mkdir(parents=True)
    (work / "jobs" / "s-1" / "out").symlink_to("/etc")
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (work / ".venv" / "bin" / "python").symlink_to("/usr/bin/python3")
    check(work, skip=(str(work / "jobs"),))
    with pytest.raises(ValidationError, match="jobs/s-1/out is a symbolic link to /etc"):
        check(work)


def test_the_walk_stops_after_its_entry_budget(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for n in range(5):
        (work / "data" / f"file-{n}").write_text("")
    (work / "data" / "zz-deep").mkdir()
    (work / "data" / "zz-deep" / "out").symlink_to("/etc")
    with pytest.raises(ValidationError):
        check(work)
    monkeypatch.setattr(preflight, "MAX_TREE_ENTRIES", 4)
    assert check(work) is False  # the link lies beyond the budget: submission is not held up by a huge tree


@pytest.mark.parametrize("budget", [3, 4, 8])
def test_the_walk_says_whether_it_saw_the_whole_tree(work: Path, monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    (work / "data" / "a.txt").write_text("")
    (work / "data" / "b.txt").write_text("")  # four entries in all: train.py, data, a.txt, b.txt
    monkeypatch.setattr(preflight, "MAX_TREE_ENTRIES", budget)
    assert check(work) is (budget >= 4)
