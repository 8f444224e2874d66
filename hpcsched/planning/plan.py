"""Plan, then apply: ``plan_submission`` turns a validated request into the exact batch script and
``sbatch`` argv (a frozen value; ``--dry-run`` prints it), and the daemon applies it."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from hpcsched import __version__
from hpcsched.jobs import layout
from hpcsched.planning.render import render
from hpcsched.planning.request import JobRequest, sbatch_resources

SIGNAL_LEAD_SECONDS = layout.SIGNAL_LEAD_SECONDS
# What a dry run shows for the values that exist only once the daemon has recorded the job.
DRY_RUN_JOB_ID, DRY_RUN_NONCE = "<job id>", "<nonce>"


@dataclass(frozen=True)
class SubmissionPlan:
    job_id: int | str  # a placeholder in a dry run
    tag: str
    job_dir: str
    script_path: str
    script_text: str
    argv: tuple[str, ...]
    launcher: tuple[str, ...] = ()  # what srun runs on every node (written into the script)

    def describe(self) -> str:
        """What ``--dry-run`` prints: the sbatch command line, then the batch script."""
        return f"# sbatch command:\n{shlex.join(self.argv)}\n# batch script ({self.script_path}):\n{self.script_text}"


def job_tag(store_id: str, job_id: int | str, attempt: int = 1) -> str:
    """The id hpcsched puts into the Slurm job's comment, to find the job again after a crash.
    A later allocation of the same job (a grow) carries its attempt number too."""
    base = f"hpcsched:{store_id}:{job_id}"
    return base if attempt == 1 else f"{base}:a{attempt}"


def parse_tag(comment: str) -> tuple[str, int] | None:
    """hpcsched's tag in a Slurm comment, ``hpcsched:<store id>:<job id>[:a<attempt>]``, as
    (store id, job id); None for any other comment."""
    parts = comment.split(":")
    if len(parts) < 3 or parts[0] != "hpcsched" or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


def launcher_argv(request: JobRequest, job_id: int | str, job_dir: str, python: str,
                  identity: tuple[str, str] | None = None) -> list[str]:
    """The per-node launcher command line (run by srun on every node). ``identity`` is the
    store id and the submission nonce, which the job's checkpoints carry (D4)."""
    argv = [
        python, "-m", "hpcsched.launcher",
        "--job-id", str(job_id),
        "--job-dir", job_dir,
        *(["--store-id", identity[0], "--job-nonce", identity[1]] if identity else []),
        "--image", request.image,
        "--workdir", request.workdir,
        "--procs-per-node", str(request.procs_per_node),
        "--gpus-per-node", str(request.gpus_per_node),
    ]
    for key, value in request.env:
        argv += ["--env", f"{key}={value}"]
    return argv + ["--", request.script, *request.script_args]


def plan_submission(
    request: JobRequest, *, job_id: int | str, store_id: str, job_dir: str, python: str,
    nodes: str | None = None, predecessor: int | None = None, attempt: int = 1, nonce: str = "",
    site_decisions: str | None = None,
) -> SubmissionPlan:
    """The batch script and sbatch argv. ``nodes`` overrides the request's node count (a resize);
    ``predecessor`` makes the allocation take over from a running one (grow); ``nonce`` is the
    submission's (none for a job recorded by an earlier version); ``site_decisions`` is the site
    coordinator's decisions directory, where the driver looks for a shrink (site mode, elastic jobs)."""
    tag = job_tag(store_id, job_id, attempt)
    identity = (store_id, nonce) if nonce else None
    script_path = f"{job_dir}/batch.sh" if attempt == 1 else f"{job_dir}/batch-{attempt}.sh"
    launcher = launcher_argv(request, job_id, job_dir, python, identity)
    text = render(
        "batch.sh.j2",
        version=__version__,
        job_id=job_id,
        name=request.name,
        tag=tag,
        nodes=nodes or (str(request.start_nodes) if request.start_nodes else str(request.nodes)),
        python=python,
        predecessor=predecessor,
        hang_timeout=request.hang_timeout if request.elastic else 0,
        site_decisions=site_decisions if request.elastic else None,
        signal_lead=SIGNAL_LEAD_SECONDS,
        cpus_per_node=request.cpus_per_node,
        resources=sbatch_resources(request),
        sbatch_extra=request.sbatch_extra,
        job_dir=job_dir,
        launcher=[shlex.quote(a) for a in launcher],
    )
    # --export=ALL: the job's environment is exactly sbatch's, which the runner builds from scratch
    # (runner.slurm_environment; docs/runtime.md). A list (--export=A,B) would instead make Slurm
    # 22.05 load the user's login environment and pass only the listed names on to srun.
    argv = (
        "sbatch", "--parsable", "--export=ALL",
        f"--chdir={request.workdir}",
        f"--output={job_dir}/slurm-%j.out",
        script_path,
    )
    return SubmissionPlan(job_id, tag, job_dir, script_path, text, argv, tuple(launcher))


def dry_run_plan(request: JobRequest, *, jobs_root: str, store_id: str, python: str,
                 site_decisions: str | None = None) -> SubmissionPlan:
    """The plan the daemon makes for the request's first submission, as ``--dry-run`` shows it
    (the daemon calls it with its own settings): the job's id and the submission nonce exist only
    once the daemon has recorded the job, so placeholders stand for them."""
    return plan_submission(
        request, job_id=DRY_RUN_JOB_ID, store_id=store_id, python=python, nonce=DRY_RUN_NONCE,
        job_dir=layout.job_dir_path(jobs_root, store_id, DRY_RUN_JOB_ID), site_decisions=site_decisions,
    )
