"""Site mode: one coordinator per cluster sizes every user's elastic jobs (docs/site.md).

The personal daemons stay the users' agents: they submit as the user and keep the user's records,
and in site mode they report their elastic jobs to the coordinator (:mod:`.agent`). The
coordinator (:mod:`.coordinator`, run under a service account that Slurm knows as an Operator)
polls Slurm once for everybody, decides (:mod:`.decide`, pure: the good-citizen rules of
:mod:`.citizen` and the allocator with fairness between users), executes and audits.
"""
