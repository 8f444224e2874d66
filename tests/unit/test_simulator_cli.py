"""``hpcsched simulate`` in process: JSON shape, table, plots, and errors for bad workloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcsched.cli.simulate import simulate
from hpcsched.simulator import POLICY_NAMES


def toy_data(root: Path) -> Path:
    """A profile folder like Pollux's for a made-up application: step times on 1-2 nodes and the
    gradient statistics of two epochs at two batch sizes."""
    folder = root / "traces" / "toy"
    folder.mkdir(parents=True)
    rows = ["placement,local_bsz,step_time,sync_time"]
    for placement, sync in (("1", 0.0), ("2", 0.02), ("4", 0.04), ("22", 0.08), ("44", 0.1)):
        for local in (8, 16, 32):
            rows.append(f"{placement},{local},{0.02 + 0.002 * local + sync},{sync}")
    (folder / "placements.csv").write_text("\n".join(rows) + "\n")
    for batch, iterations in ((16, 300), (128, 40)):
        (folder / f"validation-{batch}.csv").write_text(
            "progress,iteration,metric,grad_sqr,grad_var\n"
            f"300,{iterations},0.5,1.0,20.0\n600,{2 * iterations},0.7,0.5,40.0\n"
        )
    return root


@pytest.fixture()
def workload(tmp_path: Path) -> Path:
    path = tmp_path / "workload.csv"
    path.write_text("name,time,application,num_replicas,batch_size\nt-0,0,toy,2,32\nt-1,30,toy,1,16\nt-2,200,toy,4,64\n")
    return path


def test_json_has_one_object_per_policy(tmp_path: Path, workload: Path) -> None:
    data = toy_data(tmp_path / "data")
    result = CliRunner().invoke(simulate, ["--workload", str(workload), "--json", "--nodes", "2", "--data", str(data)])
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["policy"] for r in records] == list(POLICY_NAMES)
    for record in records:
        assert {"policy", "avg_jct", "p99_jct", "makespan", "restarts", "utilisation", "worst_ftf"} <= set(record)
        assert record["avg_jct"] > 0 and record["makespan"] >= record["avg_jct"] and record["jobs"] == 3


def test_chosen_policies_table_and_plots(tmp_path: Path, workload: Path) -> None:
    data = toy_data(tmp_path / "data")
    plots = tmp_path / "plots"
    args = ["--workload", str(workload), "--policy", "hpcsched", "--policy", "static", "--restart-cost", "slurm",
            "--seed", "3", "--plot", str(plots), "--data", str(data)]
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("| policy | restart | avg JCT (s)")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["hpcsched", "static"]
    assert sorted(p.name for p in plots.iterdir()) == ["simulation_jct_cdf.png", "simulation_utilisation.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.iterdir())


def test_malformed_workload_names_file_row_and_column(tmp_path: Path) -> None:
    data = toy_data(tmp_path / "data")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,time,application,num_replicas,batch_size\nt-0,0,toy,two,32\n")
    result = CliRunner().invoke(simulate, ["--workload", str(bad), "--data", str(data)])
    assert result.exit_code == 2
    assert f"{bad}: row 2, column 'num_replicas': expected a number, got 'two'" in result.stderr


def test_missing_workload_and_bad_restart_cost(tmp_path: Path) -> None:
    data = toy_data(tmp_path / "data")
    result = CliRunner().invoke(simulate, ["--workload", str(tmp_path / "none.csv"), "--data", str(data)])
    assert result.exit_code == 2 and "none.csv': no such file" in result.stderr
    result = CliRunner().invoke(simulate, ["--workload", str(tmp_path / "none.csv"), "--restart-cost", "fast"])
    assert result.exit_code == 2 and "--restart-cost" in result.stderr


@pytest.mark.parametrize("policy", ["pollux", "hpcsched", "static"])
def test_arrival_timing_starts_a_job_when_it_arrives_instead_of_at_the_next_round(tmp_path: Path, policy: str) -> None:
    """A lone job submitted at 10 s starts at the 60 s round by default and at once with
    ``--timing arrival``, under every policy alike. hpcsched and static keep its size, so it is the
    same run 50 s sooner; Pollux grows it at its rounds, which then fall at another point of its run."""
    data = toy_data(tmp_path / "data")
    lone = tmp_path / "lone.csv"
    lone.write_text("name,time,application,num_replicas,batch_size\nt-0,10,toy,1,16\n")

    def record(*extra: str) -> dict[str, float]:
        args = ["--workload", str(lone), "--policy", policy, "--json", "--nodes", "2", "--data", str(data), *extra]
        result = CliRunner().invoke(simulate, args)
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout)[0])

    rounds, arrival = record(), record("--timing", "arrival")
    if policy == "pollux":
        assert 10.0 < rounds["avg_jct"] - arrival["avg_jct"] <= 50.0
    else:
        assert rounds["avg_jct"] - arrival["avg_jct"] == pytest.approx(50.0, abs=1.0)
    bad = CliRunner().invoke(simulate, ["--workload", str(lone), "--timing", "often", "--data", str(data)])
    assert bad.exit_code == 2 and "--timing" in bad.stderr
