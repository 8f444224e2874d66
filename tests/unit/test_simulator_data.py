"""The Pollux data shipped inside the package: it loads, names find it, and nothing else is needed.

Every test here reads the packaged copy (``PACKAGED_DATA``) or a copy in ``tmp_path``, never a
folder beside the checkout, and unsets ``$HPCSCHED_POLLUX_DATA`` where the default matters.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcsched.cli.simulate import simulate
from hpcsched.simulator import WorkloadError, read_workload
from hpcsched.simulator.data import PACKAGED_DATA, data_dir, default_applications, resolve_workload

APPLICATIONS = ["bert", "cifar10", "deepspeech2", "imagenet", "ncf", "yolov3"]
JOBS_PER_FOLDER = {"workloads": 160, "workloads-0.5": 80, "workloads-1.5": 240, "workloads-2.0": 320,
                   "workloads-realistic": 160}


@pytest.fixture()
def packaged_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCSCHED_POLLUX_DATA", raising=False)


def test_packaged_profiles_fit_all_six_applications() -> None:
    assert sorted(default_applications(PACKAGED_DATA)) == APPLICATIONS


def test_the_simulated_truth_does_not_move_with_the_daemons_default_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tuning the daemon's prior must not change the world every policy is scored in: the
    applications' true step-time models are fitted with a prior of their own."""
    from hpcsched.models import throughput_fit
    from hpcsched.simulator import applications

    before = {name: app.params for name, app in default_applications(PACKAGED_DATA).items()}
    monkeypatch.setattr(throughput_fit, "DEFAULT_PRIOR", throughput_fit.ThroughputPrior(alpha_r=0.5, alpha_n=2.0))
    after = {name: app.params for name, app in applications.load_applications(PACKAGED_DATA / "traces").items()}
    assert after == before


@pytest.mark.parametrize("folder", sorted(JOBS_PER_FOLDER))
def test_packaged_workloads_have_the_published_job_counts(folder: str) -> None:
    prefix = "" if folder == "workloads" else f"{folder}/"
    for number in range(1, 9):
        path = resolve_workload(f"{prefix}workload-{number}", PACKAGED_DATA)
        assert path == PACKAGED_DATA / folder / f"workload-{number}.csv"
        jobs = read_workload(path, APPLICATIONS)
        assert len(jobs) == JOBS_PER_FOLDER[folder]
        if folder == "workloads":  # workloads-realistic/ holds the user-style sizes of these jobs
            assert all(job.realistic is not None for job in jobs)


def test_packaged_philly_trace_is_read_through_its_compression() -> None:
    path = resolve_workload("philly", PACKAGED_DATA)
    assert path.name == "philly.csv.gz"
    jobs = read_workload(path, APPLICATIONS)
    assert len(jobs) == 160 and all(job.duration_s for job in jobs)


def test_default_data_is_the_packaged_copy_and_the_environment_overrides_it(
        packaged_default: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert data_dir() == PACKAGED_DATA
    assert (PACKAGED_DATA / "README.md").is_file() and (PACKAGED_DATA / "LICENSE").is_file()
    monkeypatch.setenv("HPCSCHED_POLLUX_DATA", str(tmp_path))
    assert data_dir() == tmp_path


def test_names_resolve_in_the_chosen_copy_and_a_file_wins(tmp_path: Path) -> None:
    (tmp_path / "workloads").mkdir()
    shutil.copy(PACKAGED_DATA / "workloads" / "workload-3.csv", tmp_path / "workloads" / "workload-3.csv")
    assert resolve_workload("workload-3", tmp_path) == tmp_path / "workloads" / "workload-3.csv"
    assert resolve_workload("workloads/workload-3.csv", tmp_path) == tmp_path / "workloads" / "workload-3.csv"
    own = tmp_path / "mine.csv"
    own.write_text("name,time,application,num_replicas,batch_size\n")
    assert resolve_workload(str(own), PACKAGED_DATA) == own
    with pytest.raises(WorkloadError, match=r"'workload-1': no such file.*known: workload-3\)"):
        resolve_workload("workload-1", tmp_path)


def test_a_damaged_compressed_workload_is_reported_with_its_path(tmp_path: Path) -> None:
    damaged = tmp_path / "philly.csv.gz"
    damaged.write_bytes(b"timestamp,duration,num_gpus\n")
    with pytest.raises(WorkloadError, match=r"philly\.csv\.gz: cannot read"):
        read_workload(damaged)


def test_simulate_runs_a_packaged_workload_by_name(packaged_default: None) -> None:
    args = ["--workload", "workloads-0.5/workload-1", "--policy", "static", "--json"]
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 0, result.output
    assert [(r["policy"], r["jobs"]) for r in json.loads(result.stdout)] == [("static", 80)]


def test_simulate_names_the_known_workloads_for_an_unknown_one(packaged_default: None) -> None:
    result = CliRunner().invoke(simulate, ["--workload", "workload-9"])
    assert result.exit_code == 2
    assert "'workload-9': no such file" in result.output
    assert "workload-1 ... workload-8" in result.output and "workloads-2.0/workload-1" in result.output
    assert "philly" in result.output


def test_the_realistic_workloads_change_only_what_the_elastic_policies_choose_themselves() -> None:
    """``workloads-realistic`` holds the same jobs at the same times with the configurations users
    would submit; the elastic policies choose GPUs and batch themselves, so they run it exactly as
    the 1.0x workload (why the held-out evaluation does not run it twice, docs/simulator.md), and
    only the static baselines see a difference."""
    from hpcsched.allocator import Cluster
    from hpcsched.simulator import RestartModel, simulate

    apps = default_applications(PACKAGED_DATA)
    def short(folder: str) -> list:  # type: ignore[type-arg]
        jobs = read_workload(PACKAGED_DATA / folder / "workload-5.csv", list(apps))
        return [j for j in jobs if j.application in ("ncf", "cifar10")][:16]  # minutes, not hours

    tuned, realistic = short("workloads"), short("workloads-realistic")
    assert [(j.name, j.submit_time) for j in tuned] == [(j.name, j.submit_time) for j in realistic]
    assert [(j.num_replicas, j.batch_size) for j in tuned] != [(j.num_replicas, j.batch_size) for j in realistic]

    def jct(workload: list, policy: str) -> float:  # type: ignore[type-arg]
        result = simulate(workload, policy, Cluster(4, 4), RestartModel.parse("30"), applications=apps)
        return float(result.jcts.mean())

    for policy in ("hpcsched", "pollux-faithful"):
        assert jct(tuned, policy) == jct(realistic, policy)
    assert jct(tuned, "static") != jct(realistic, "static")
