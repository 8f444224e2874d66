"""Reading workloads: the Pollux format, the Philly trace, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcsched.simulator import WorkloadError, parse_workload, philly_workload, read_philly, read_workload
from hpcsched.simulator.restarts import RestartModel

NEED = "name, time, application, num_replicas, batch_size"
GOOD = "name,time,application,num_replicas,batch_size\nb-1,30,bert,4,48\na-0,5,cifar10,1,128\n"


def test_jobs_come_sorted_by_submit_time() -> None:
    jobs = parse_workload(GOOD, "w.csv", ["bert", "cifar10"])
    assert [(j.name, j.submit_time, j.num_replicas, j.batch_size) for j in jobs] == [("a-0", 5.0, 1, 128), ("b-1", 30.0, 4, 48)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,time,application\nx,1,bert\n", f"w.csv: row 1: missing column(s) num_replicas, batch_size (need {NEED})"),
        (GOOD + "c-2,soon,bert,1,12\n", "w.csv: row 4, column 'time': expected a number, got 'soon'"),
        (GOOD + "c-2,40,bert,0,12\n", "w.csv: row 4, column 'num_replicas': out of range: '0'"),
        (GOOD + "c-2,40,gpt5,1,12\n", "w.csv: row 4, column 'application': unknown application 'gpt5'"),
        (GOOD + "a-0,40,bert,1,12\n", "w.csv: row 4, column 'name': empty or repeated job name 'a-0'"),
        ("name,time,application,num_replicas,batch_size\n", "w.csv: no jobs"),
    ],
)
def test_malformed_rows_name_the_file_row_and_column(text: str, message: str) -> None:
    with pytest.raises(WorkloadError) as error:
        parse_workload(text, "w.csv", ["bert", "cifar10"])
    assert str(error.value) == message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match=r"nope\.csv: cannot read"):
        read_workload(tmp_path / "nope.csv")


def test_realistic_configurations_come_from_the_sibling_folder(tmp_path: Path) -> None:
    (tmp_path / "workloads").mkdir()
    (tmp_path / "workloads-realistic").mkdir()
    (tmp_path / "workloads" / "workload-1.csv").write_text(GOOD)
    (tmp_path / "workloads-realistic" / "workload-1.csv").write_text(GOOD.replace("4,48", "1,12"))
    jobs = read_workload(tmp_path / "workloads" / "workload-1.csv")
    assert {j.name: j.realistic for j in jobs} == {"a-0": (1, 128), "b-1": (1, 12)}


def test_philly_window_keeps_arrivals_sizes_and_durations() -> None:
    text = (
        "timestamp,duration,num_gpus,gpu_time,cluster\n"
        "2017-10-09 07:00:00,100.0,1,100.0,x\n2017-10-09 06:00:00,50.0,8,400.0,x\n"
        "2017-10-09 06:30:00,0.0,1,0.0,x\n2017-10-10 06:00:00,70.0,2,140.0,x\n"
    )
    jobs = philly_workload(text, "philly.csv", ["cifar10", "ncf"], hours=8.0, start_index=0, max_gpus=4, seed=3)
    assert [(j.submit_time, j.num_replicas, j.duration_s) for j in jobs] == [(0.0, 4, 50.0), (3600.0, 1, 100.0)]
    assert {j.application for j in jobs} <= {"cifar10", "ncf"}
    assert len(philly_workload(text, "philly.csv", ["ncf"], hours=48.0, start_index=0, max_jobs=2)) == 2
    with pytest.raises(WorkloadError, match="row 2, column 'timestamp'"):
        philly_workload("timestamp,duration,num_gpus\nyesterday,1,1\n", "philly.csv", ["ncf"])


def test_philly_samples_start_where_asked_and_reject_a_bad_quantile(tmp_path: Path) -> None:
    rows = "".join(f"2017-10-09 {h:02d}:00:00,{10 * (h + 1)}.0,1,1.0,x\n" for h in range(8))
    path = tmp_path / "philly.csv"
    path.write_text("timestamp,duration,num_gpus,gpu_time,cluster\n" + rows)
    # 8 jobs an hour apart: the quantile picks the first job of the window, a 1-hour window keeps two
    assert [j.duration_s for j in read_philly(path, ["ncf"], 0.0, seed=0, hours=1.0)] == [10.0, 20.0]
    assert [j.duration_s for j in read_philly(path, ["ncf"], 0.75, seed=0, hours=1.0)] == [70.0, 80.0]
    with pytest.raises(WorkloadError, match=r"start quantile 1\.0 is not in"):
        read_philly(path, ["ncf"], 1.0)


def test_restart_cost_parsing() -> None:
    assert RestartModel.parse("30").label == "30s"
    assert RestartModel.parse("slurm").expected(0.5).seconds(4, 8) == pytest.approx(10 + 60 + 5)
    assert RestartModel.parse("slurm").expected(0.5).seconds(8, 4) == pytest.approx(15)
    with pytest.raises(ValueError, match="seconds or 'slurm'"):
        RestartModel.parse("soon")
