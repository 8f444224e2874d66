"""``hpcsched doctor``'s image check on the real cluster looks where the launcher looks: each
emulated node's own storage root (HPCSCHED_NODE_STORAGE), not the host's, and a pushed archive in
the shared image directory counts as there (the launcher loads it on first use)."""

from __future__ import annotations

from conftest import NODE_PREFIX, UserSession
from test_doctor import WAIT, doctor
from test_images import IMAGE, node_env


def test_doctor_checks_the_image_in_the_node_storage_and_accepts_a_pushed_archive(session: UserSession) -> None:
    env = node_env(session)  # fresh, empty storage per node; the host's own storage has the image
    code, found = doctor(session, "--wait", WAIT, env=env)
    image = found["image"]
    assert (code, image["status"]) == (1, "fail"), found
    assert image["found"].startswith(f"{IMAGE} is not in Podman's storage on {NODE_PREFIX}")
    assert image["fix"].startswith(f"push it from the login node: `hpcsched image push {IMAGE}`")
    assert found["storage"]["found"].startswith(f"graph root {session.root}/nodes/node-"), found["storage"]

    session.hs("image", "push", env=env, timeout=600)
    code, found = doctor(session, "--wait", WAIT, env=env)
    assert found["image"]["status"] == "ok", found["image"]
    assert found["image"]["found"].endswith("yet; the launcher loads the pushed archive there on first use")
