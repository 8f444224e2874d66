"""The runtime library on a real GPU: the one script to run when a machine with a CUDA GPU is at hand.

    python benchmarks/gpu_device_check.py            # needs torch with CUDA and numpy; no Slurm, no Podman

Three checks, each in fresh processes started with torchrun's variables (RANK=0 of 1, env://), so
the trainer takes the path it takes in a job: the process group, the device, the checkpoints.

* elastic: ElasticTrainer on cuda:0 with NCCL, a small CNN on synthetic 3x32x32 images (on the
  GPU), checkpoints every 20 steps; the step times it reports.
* stop and resume across devices: attempt 1 on the GPU stops at step 15 (SIGUSR1, as Slurm's
  warning; exit 75 with a checkpoint), attempt 2 resumes that GPU checkpoint on the CPU
  (CUDA_VISIBLE_DEVICES empty: gloo) and stops at step 25, attempt 3 resumes the CPU checkpoint on
  the GPU and finishes at step 40.
* adaptive: AdaptiveBatch on the GPU; the configurations it chose, their predicted and measured
  (GPU-synchronised) step times.

Writes benchmarks/results/gpu_device_check.{json,md} with the device's name, and exits 1 when a
check failed. Without CUDA it refuses (exit 2) and writes nothing. ``--cpu-rehearsal`` runs the
same on the CPU (gloo everywhere) into a temporary directory, to try the script where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))  # the runtime library from this checkout; the project need not be installed

SAMPLES, BATCH, EPOCHS = 1280, 64, 2  # 20 steps an epoch
STOP_AT = (15, 25)  # the steps after which attempts 1 and 2 are stopped
ADAPTIVE_SAMPLES, ADAPTIVE_EPOCHS = 16384, 2


def cuda_refusal(available: bool, torch_version: str, cuda_version: str | None) -> str | None:
    """Why this machine cannot run the check, or None."""
    if available:
        return None
    build = f"built with CUDA {cuda_version}" if cuda_version else "built without CUDA"
    return (f"gpu_device_check: no CUDA GPU here (torch {torch_version}, {build}): run it on a machine with an "
            "NVIDIA GPU and a CUDA build of torch, or try it on the CPU with --cpu-rehearsal")


# --- the worker: one attempt of one check, in its own process ------------------------------------


def worker(check: str, stop_at: int) -> None:
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import TensorDataset

    from hpcsched.runtime import AdaptiveBatch, ElasticTrainer

    adaptive = check == "adaptive"
    torch.manual_seed(0)
    size = ADAPTIVE_SAMPLES if adaptive else SAMPLES
    images = torch.randn(size, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.randint(0, 10, (size,), generator=torch.Generator().manual_seed(2))
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(1024, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    options = AdaptiveBatch(max_batch_size=2048, max_local_batch=1024, first_adapt=10, adapt_every=20) \
        if adaptive else None
    trainer = ElasticTrainer(model, optimizer, checkpoint_every=20, adaptive=options)
    start = trainer.global_step
    report("start", device=str(trainer.device), backend=dist.get_backend() if dist.is_initialized() else None,
           device_name=torch.cuda.get_device_name(trainer.device) if trainer.device.type == "cuda" else platform.processor(),
           resumed_at=start if trainer.resumed_from else None)
    data = TensorDataset(images.to(trainer.device), labels.to(trainer.device))
    loss_fn, loss = nn.CrossEntropyLoss(), torch.zeros(())
    for _ in trainer.epochs(ADAPTIVE_EPOCHS if adaptive else EPOCHS):
        for x, y in trainer.batches(data, batch_size=BATCH, seed=0):
            loss = loss_fn(trainer.model(x), y)
            if adaptive:
                trainer.train_step(loss)
                continue
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if trainer.global_step + 1 == stop_at:
                os.kill(os.getpid(), signal.SIGUSR1)  # what Slurm's warning does to a job
            trainer.step(loss=loss.item())
    trainer.finish()
    report("end", step=trainer.global_step, loss=float(loss),
           weights_on=str(next(trainer.module.parameters()).device))


def report(what: str, **values: Any) -> None:
    print(f"RESULT {json.dumps({'what': what, **values})}", flush=True)


# --- the parent: runs the attempts, reads what they said -------------------------------------------


def parse_reports(output: str) -> dict[str, dict[str, Any]]:
    """The worker's RESULT lines by kind ("start", "end")."""
    found = {}
    for line in output.splitlines():
        if line.startswith("RESULT "):
            value = json.loads(line[len("RESULT "):])
            found[value.pop("what")] = value
    return found


def progress_summary(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean reported step time per (attempt, global batch), and the adaptive decisions."""
    timed: dict[str, list[float]] = {}
    for line in lines:
        if line.get("event") == "step" and line.get("step_time"):
            key = f"attempt {line['attempt']}, batch {line['global_batch']}"
            timed.setdefault(key, []).extend([line["step_time"]] * int(line["timed_steps"]))
    adapts = [{k: line.get(k) for k in ("step", "global_batch", "local_batch", "accum_steps", "reason",
                                          "predicted_step_time")} for line in lines if line.get("event") == "adapt"]
    return {"step_time_s": {k: sum(v) / len(v) for k, v in timed.items()}, "adapt": adapts}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attempt(check: str, job_dir: Path, number: int, *, on_gpu: bool, stop_at: int = 0) -> dict[str, Any]:
    env = {**os.environ, "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "HPCSCHED_JOB_DIR": str(job_dir),
           "HPCSCHED_ATTEMPT": str(number), "PYTHONPATH": str(REPO)}
    if not on_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    began = time.monotonic()
    proc = subprocess.run([sys.executable, __file__, "worker", check, str(stop_at)], env=env, capture_output=True,
                          text=True, timeout=1800, check=False)
    reports = parse_reports(proc.stdout)
    return {"attempt": number, "exit_code": proc.returncode, "seconds": round(time.monotonic() - began, 1),
            **reports.get("start", {}), **({"end": reports["end"]} if "end" in reports else {}),
            **({"stderr_tail": proc.stderr[-2000:]} if proc.returncode not in (0, 75) else {})}


def run_check(check: str, root: Path, plan: list[tuple[bool, int]]) -> dict[str, Any]:
    job_dir = root / check
    job_dir.mkdir()
    attempts = [attempt(check, job_dir, n, on_gpu=gpu, stop_at=stop) for n, (gpu, stop) in enumerate(plan, 1)]
    progress = job_dir / "progress.jsonl"
    lines = [json.loads(x) for x in progress.read_text().splitlines()] if progress.exists() else []
    return {"attempts": attempts, **progress_summary(lines)}


def problems(results: dict[str, Any], gpu: str) -> list[str]:
    """What went wrong; ``gpu`` is the device type the GPU attempts were meant to use ("cuda")."""
    accel = ("cuda", "nccl") if gpu == "cuda" else ("cpu", "gloo")
    expected = {
        "elastic": [(accel, 0, None)],
        "stop_resume": [(accel, 75, None), (("cpu", "gloo"), 75, STOP_AT[0]), (accel, 0, STOP_AT[1])],
        "adaptive": [(accel, 0, None)],
    }
    found = []
    for check, wanted in expected.items():
        attempts = results["checks"][check]["attempts"]
        for a, ((device, backend), code, resumed) in zip(attempts, wanted, strict=True):
            seen = (str(a.get("device", "")).split(":")[0], a.get("backend"), a["exit_code"], a.get("resumed_at"))
            if seen != (device, backend, code, resumed):
                found.append(f"{check} attempt {a['attempt']}: device, backend, exit, resumed at = {seen}, "
                             f"expected {(device, backend, code, resumed)}")
    if results["checks"]["stop_resume"]["attempts"][-1].get("end", {}).get("step") != EPOCHS * SAMPLES // BATCH:
        found.append("stop_resume: the last attempt did not finish every step")
    if not results["checks"]["adaptive"]["adapt"]:
        found.append("adaptive: no configuration was chosen")
    return found


def milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def markdown(results: dict[str, Any]) -> str:
    rows = ["| check | attempt | device | backend | exit | resumed at step | seconds |", "|---|---:|---|---|---:|---:|---:|"]
    for check, data in results["checks"].items():
        rows += [f"| {check} | {a['attempt']} | {a.get('device')} | {a.get('backend')} | {a['exit_code']} | "
                 f"{a.get('resumed_at') or '-'} | {a['seconds']} |" for a in data["attempts"]]
    times = [f"| {check} | {key} | {milliseconds(seconds)} |" for check, data in results["checks"].items()
             for key, seconds in data["step_time_s"].items()]
    adapts = [f"| {a['step']} | {a['global_batch']} | {a['local_batch']} | {a['accum_steps']} | {a['reason']} | "
              f"{milliseconds(a['predicted_step_time'])} |" for a in results["checks"]["adaptive"]["adapt"]]
    verdict = "all checks passed" if not results["problems"] else "FAILED: " + "; ".join(results["problems"])
    return "\n".join([
        f"# The runtime library on a GPU: {results['device_name']}", "",
        f"{results['time']}, torch {results['torch']}, CUDA {results['cuda']}, Python {results['python']}, "
        f"commit {results['commit']}{' (CPU rehearsal, not a GPU)' if results['rehearsal'] else ''}: {verdict}.", "",
        *rows, "", "Mean step time the trainer reported (GPU-synchronised):", "",
        "| check | attempt, global batch | step time (ms) |", "|---|---|---:|", *times, "",
        "Adaptive batch decisions:", "", "| step | global batch | local batch | accumulation | reason | predicted (ms) |",
        "|---:|---:|---:|---:|---|---:|", *adapts, "",
    ])


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_device_check", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="results directory [default: benchmarks/results]")
    p.add_argument("--cpu-rehearsal", action="store_true", help="run on the CPU into a temporary directory")
    a = p.parse_args(argv)
    import torch

    refusal = None if a.cpu_rehearsal else cuda_refusal(torch.cuda.is_available(), torch.__version__, torch.version.cuda)
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    out = a.out or (Path(tempfile.mkdtemp(prefix="gpu-rehearsal-")) if a.cpu_rehearsal else RESULTS)
    gpu = not a.cpu_rehearsal
    with tempfile.TemporaryDirectory(prefix="gpu-device-check-") as tmp:
        root = Path(tmp)
        checks = {
            "elastic": run_check("elastic", root, [(gpu, 0)]),
            "stop_resume": run_check("stop_resume", root, [(gpu, STOP_AT[0]), (False, STOP_AT[1]), (gpu, 0)]),
            "adaptive": run_check("adaptive", root, [(gpu, 0)]),
        }
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    results: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(0) if gpu else f"CPU ({platform.machine()})",
        "rehearsal": not gpu, "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "commit": commit or "unknown", "checks": checks,
    }
    results["problems"] = problems(results, "cuda" if gpu else "cpu")
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_device_check.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "gpu_device_check.md").write_text(markdown(results))
    print(f"gpu_device_check: {len(results['problems'])} problem(s); results in {out}")
    for problem in results["problems"]:
        print(f"  {problem}")
    return 1 if results["problems"] else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit(main(sys.argv[1:]))
