"""Adaptive batch sizes across two real torchrun workers, and after a resize to one.

examples/digits_nas.py --adaptive runs under ``torch.distributed.run --nproc-per-node 2`` on the
CPU (gloo): the DDP communication hook measures the gradient noise across the two replicas, the
job changes its batch as it trains and still learns; attempt 2 resumes at one worker with the
base batch and the step times of attempt 1.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_torchrun_stop import records, torchrun

REPO = Path(__file__).resolve().parents[2]
NAS = REPO / "examples" / "digits_nas.py"


def finished(job: Path, attempt: int, nproc: int, epochs: int, tmp_path: Path) -> str:
    out = tmp_path / f"attempt-{attempt}.log"
    launcher = torchrun(job, attempt, nproc, out, NAS, ("--adaptive", "--epochs", str(epochs), "--batch-size", "16"))
    assert launcher.wait(timeout=300) == 0, out.read_text()[-3000:]
    return out.read_text()


def test_adaptive_job_measures_noise_across_replicas_and_keeps_its_base_after_a_resize(tmp_path: Path) -> None:
    job = tmp_path / "job"
    job.mkdir()
    log = finished(job, 1, 2, 12, tmp_path)
    final = re.search(r"^final val_acc=(\d\.\d+)$", log, re.M)
    assert final is not None and float(final.group(1)) >= 0.9, log[-2000:]
    first = [r for r in records(job) if r["attempt"] == 1]
    adapt = [r for r in first if r["event"] == "adapt"]
    assert (adapt[0]["reason"], adapt[0]["global_batch"], adapt[0]["base_batch"]) == ("initial", 32, 32)
    assert len(adapt) >= 2 and {r["reason"] for r in adapt[1:]} <= {"explore", "goodput"}
    assert first[-1]["world_size"] == 2 and first[-1]["grad_var"] > 0  # measured by the hook across replicas
    assert any(r["event"] == "step" and r["timed_steps"] > 0 and r["step_time"] > 0 for r in first)

    log = finished(job, 2, 1, 14, tmp_path)  # two more epochs on one worker
    assert "hpcsched: resumed from" in log
    second = [r for r in records(job) if r["attempt"] == 2]
    start = next(r for r in second if r["event"] == "adapt")
    assert start["base_batch"] == 32 and start["world_size"] == 1
    assert start["reason"] in ("goodput", "explore", "keep")  # chosen from attempt 1's measurements, not "initial"
    assert second[-1]["event"] == "done" and second[-1]["epoch"] == 14
