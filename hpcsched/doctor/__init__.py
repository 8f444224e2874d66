"""``hpcsched doctor``: does this account on this cluster have everything hpcsched needs?

:mod:`.findings` is the checklist's value type; :mod:`.verdicts` turns captured outputs (a Slurm
command's answer, /etc/subuid, the mount table, one compute node's ``podman info``) into findings
and reads nothing itself; :mod:`.probes` gathers those outputs through injected runners and puts
the checklist together.
"""
