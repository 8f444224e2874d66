"""The example scripts train for real on one CPU process, outside hpcsched."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run(script: str, cwd: Path, *args: str) -> str:
    argv = [sys.executable, str(REPO / "examples" / script), *args]
    done = subprocess.run(argv, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_digits_cnn_reaches_90_percent_in_20_epochs(tmp_path: Path) -> None:
    out = run("digits_cnn.py", tmp_path, "--epochs", "20")
    epochs = re.findall(r"^epoch=(\d+) step=(\d+) val_acc=(\d\.\d+)$", out, re.M)
    assert [int(e) for e, _, _ in epochs] == list(range(20))
    final = re.search(r"^final val_acc=(\d\.\d+)$", out, re.M)
    assert final is not None and float(final.group(1)) >= 0.9, out
    assert (tmp_path / "checkpoints").is_dir()  # outside hpcsched: ./checkpoints
    again = run("digits_cnn.py", tmp_path, "--epochs", "20")  # resumes from the final checkpoint
    assert "hpcsched: resumed from" in again and again.count("epoch=") == 1


def test_plain_ddp_script_runs(tmp_path: Path) -> None:
    out = run("plain_ddp.py", tmp_path, "--epochs", "2")
    final = re.search(r"^final val_acc=(\d\.\d+)$", out, re.M)
    assert final is not None and float(final.group(1)) >= 0.8, out
    assert list(tmp_path.iterdir()) == []


def test_digits_nas_harder_task_still_learns_and_rejects_bad_sizes(tmp_path: Path) -> None:
    harder = ["--image-size", "16", "--augment", "2", "--noise", "0.3"]
    out = run("digits_nas.py", tmp_path, "--epochs", "2", "--checkpoint-every", "100000", *harder)
    final = re.search(r"^final val_acc=(\d\.\d+)$", out, re.M)
    assert final is not None and float(final.group(1)) >= 0.5, out  # chance is 0.1
    argv = [sys.executable, str(REPO / "examples" / "digits_nas.py"), "--augment", "0"]
    bad = subprocess.run(argv, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--augment >= 1" in bad.stderr
