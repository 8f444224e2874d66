"""The image on every node: the launcher's first-use load, the push, and the per-node verdicts,
with a fake ``podman`` whose "archives" are files holding the image id."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpcsched.cli.main import cli
from hpcsched.errors import HpcschedError, ValidationError
from hpcsched.images import check, distribute
from hpcsched.images.node import NodeImages, ensure_image, node_images
from hpcsched.images.podman import Podman, PodmanResult
from hpcsched.images.shared import image_dir, manifest_path, read_manifest
from hpcsched.launcher.podman_state import killed_containers, recover_stale_state
from hpcsched.launcher.storage import node_storage_paths

IMAGE = "localhost/hpcsched-train:latest"
NEW, OLD = "a" * 64, "b" * 64


class FakePodman:
    """Images by name -> id; ``save`` writes the id into the archive and ``load`` reads it back
    (``tamper`` makes a load give another id, as an archive changed after its push would)."""

    def __init__(self, images: dict[str, str] | None = None, tamper: str = "", broken: str = "",
                 stale: str = "") -> None:
        self.images = dict(images or {})
        self.tamper, self.broken = tamper, broken
        self.stale = stale  # "" fine; "repairable" or "for good": every command fails until migrate
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> PodmanResult:
        self.calls.append(list(argv))
        args = [a for a in argv[1:] if not a.startswith("--root") and not a.startswith("/")]
        verb = args[0] if args else ""
        if args[:2] == ["system", "migrate"] and self.stale == "repairable":
            self.stale = ""  # reset, though it fails to stop the containers whose processes are gone
            return PodmanResult(tuple(argv), 125, "", "cannot stop container 0c87: timed out waiting for file\n")
        if self.stale:
            return PodmanResult(tuple(argv), 1, "", 'level=error msg="invalid internal status, try resetting the '
                                'pause process with \\"podman system migrate\\": could not find any running process"\n')
        if verb == "image" and args[1] == "exists":
            if self.broken:
                return PodmanResult(tuple(argv), 125, "", f"Error: {self.broken}\n")
            return PodmanResult(tuple(argv), 0 if argv[-1] in self.images else 1, "", "")
        if verb == "image" and args[1] == "inspect":
            found = self.images.get(argv[-1])
            return PodmanResult(tuple(argv), 0 if found else 125, f"{found}\n" if found else "", "" if found else "no such image")
        if verb == "save":
            Path(argv[argv.index("--output") + 1]).write_text(self.images[argv[-1]])
        if verb == "load":
            path = argv[argv.index("--input") + 1]
            self.images[IMAGE] = self.tamper or Path(path).read_text()  # Podman 4.3 reads no gzip
        return PodmanResult(tuple(argv), 0, "", "")

    def loads(self) -> int:
        return sum(1 for c in self.calls if "load" in c)


def where(fake: FakePodman, directory: str) -> NodeImages:
    return NodeImages("node2", Podman((), fake), directory, "/unused", f"{directory}/scratch")


@contextlib.contextmanager
def no_lock(_path: str) -> Iterator[object]:
    yield None


def pushed(tmp_path: Path, image_id: str = NEW, compress: bool = False) -> str:
    distribute.push_archive(Podman((), FakePodman({IMAGE: image_id})), IMAGE, str(tmp_path), compress, lambda: 1.0)
    return str(tmp_path)


def test_a_node_without_the_image_and_nothing_pushed_is_named_with_the_push_command() -> None:
    problem = ensure_image(IMAGE, where(FakePodman(), ""), print, no_lock)
    assert problem is not None and problem.startswith(f"image {IMAGE} is not in Podman's storage on node2")
    assert "HPCSCHED_IMAGE_DIR" in problem and f"hpcsched image push {IMAGE}" in problem


def test_a_node_without_the_image_loads_the_pushed_archive_once_and_verifies_its_id(tmp_path: Path) -> None:
    fake, said = FakePodman(), []
    assert ensure_image(IMAGE, where(fake, pushed(tmp_path)), said.append, no_lock) is None
    assert fake.images[IMAGE] == NEW and fake.loads() == 1
    assert said == [f"loading {IMAGE} ({NEW[:12]}) from {tmp_path}/archives/localhost_hpcsched-train_latest.tar",
                    f"loaded {IMAGE} ({NEW[:12]})"]
    assert ensure_image(IMAGE, where(fake, str(tmp_path)), said.append, no_lock) is None and fake.loads() == 1


def test_a_compressed_archive_is_unpacked_on_the_node_loaded_and_the_unpacked_copy_removed(tmp_path: Path) -> None:
    fake = FakePodman()
    assert ensure_image(IMAGE, where(fake, pushed(tmp_path, compress=True)), print, no_lock) is None
    [load] = [c for c in fake.calls if "load" in c]
    assert fake.images[IMAGE] == NEW and load[-1].startswith(f"{tmp_path}/scratch/hpcsched-image-")
    assert list((tmp_path / "scratch").iterdir()) == []


def test_an_older_copy_on_the_node_is_replaced_by_a_newer_push(tmp_path: Path) -> None:
    fake = FakePodman({IMAGE: OLD})
    assert ensure_image(IMAGE, where(fake, pushed(tmp_path)), print, no_lock) is None
    assert fake.images[IMAGE] == NEW


def test_an_archive_that_loads_as_another_image_is_refused_naming_both_ids(tmp_path: Path) -> None:
    problem = ensure_image(IMAGE, where(FakePodman(tamper=OLD), pushed(tmp_path)), print, no_lock)
    assert problem is not None and f"gives {IMAGE} id {OLD[:12]}, not {NEW[:12]}" in problem and "node2" in problem


def test_a_node_whose_podman_cannot_look_is_named_with_podmans_error(tmp_path: Path) -> None:
    broken = FakePodman(broken="the specified runroot is longer than 50 characters")
    problem = ensure_image(IMAGE, where(broken, pushed(tmp_path)), print, no_lock)
    assert problem == (f"Podman on node2 cannot look for {IMAGE}: podman image exists failed: "
                       "Error: the specified runroot is longer than 50 characters")
    assert broken.loads() == 0


@pytest.mark.parametrize("stale", ["repairable", ""])
def test_podman_state_naming_killed_containers_is_reset_once_and_the_image_found(stale: str) -> None:
    fake, said = FakePodman({IMAGE: NEW}, stale=stale), []
    assert recover_stale_state(where(fake, ""), said.append, no_lock) is None
    assert ensure_image(IMAGE, where(fake, ""), said.append, no_lock) is None
    migrations = [c for c in fake.calls if c[-2:] == ["system", "migrate"]]
    assert len(migrations) == (1 if stale else 0)
    assert bool(said) == bool(stale) and all("podman system migrate" in s for s in said)


def test_after_a_reset_only_containers_made_before_it_and_not_running_or_starting_are_the_killed_ones() -> None:
    listing = json.dumps([
        {"Id": "dead1", "State": "stopping", "Created": 100}, {"Id": "dead2", "State": "exited", "Created": 150},
        {"Id": "starting", "State": "created", "Created": 120}, {"Id": "new", "State": "exited", "Created": 200},
        {"Id": "live", "State": "running", "Created": 210}, {"State": "exited", "Created": 1},
    ])
    assert killed_containers(listing, before=200) == ["dead1", "dead2"]
    assert killed_containers("not json", before=200) == [] and killed_containers("", before=200) == []


def test_podman_state_that_migrate_cannot_repair_is_a_problem_naming_the_node() -> None:
    problem = recover_stale_state(where(FakePodman({IMAGE: NEW}, stale="for good"), ""), print, no_lock)
    assert problem and "node2" in problem and "podman system migrate` did not repair it" in problem


def test_podman_that_fails_with_exit_1_is_not_read_as_a_missing_image() -> None:
    problem = ensure_image(IMAGE, where(FakePodman({IMAGE: NEW}, stale="for good"), ""), print, no_lock)
    assert problem and problem.startswith("Podman on node2 cannot look for") and "push it" not in problem


def test_a_launcher_that_waited_for_the_lock_does_not_load_again(tmp_path: Path) -> None:
    fake = FakePodman()

    @contextlib.contextmanager
    def other_launcher_loads_first(_path: str) -> Iterator[object]:
        fake.images[IMAGE] = NEW
        yield None

    assert ensure_image(IMAGE, where(fake, pushed(tmp_path)), print, other_launcher_loads_first) is None
    assert fake.loads() == 0


def test_push_writes_the_archive_and_a_manifest_and_replaces_the_other_format(tmp_path: Path) -> None:
    pushed(tmp_path, OLD, compress=True)
    pushed(tmp_path, NEW)
    manifest = read_manifest(str(tmp_path), IMAGE)
    assert manifest is not None and (manifest.id, manifest.compressed, manifest.bytes) == (NEW, False, 64)
    assert sorted(p.name for p in (tmp_path / "archives").iterdir()) == [
        "localhost_hpcsched-train_latest.json", "localhost_hpcsched-train_latest.tar"]


def test_push_of_an_image_this_node_lacks_says_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(HpcschedError, match="is not in Podman's storage on this node: build it first"):
        distribute.push_archive(Podman((), FakePodman()), IMAGE, str(tmp_path), False, lambda: 1.0)


def test_a_manifest_that_is_not_one_is_named(tmp_path: Path) -> None:
    path = Path(manifest_path(str(tmp_path), IMAGE))
    path.parent.mkdir()
    path.write_text(json.dumps({"image": IMAGE}))
    with pytest.raises(ValidationError, match=f"{path}: not an image manifest"):
        read_manifest(str(tmp_path), IMAGE)


@pytest.mark.parametrize("given", ["", "relative/dir"])
def test_the_shared_directory_must_be_given_and_absolute(given: str) -> None:
    with pytest.raises(ValidationError, match="--dir"):
        image_dir({}, given)


def test_each_emulated_node_gets_its_own_storage_root_and_the_shared_store(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    env = {"HPCSCHED_NODE_STORAGE": "/tmp/hpcsched-node-{node}", "HPCSCHED_IMAGE_DIR": str(tmp_path)}
    images = node_images("node3", env)
    assert images.podman.argv("images") == [
        "podman", "--root", "/tmp/hpcsched-node-node3/graph", "--runroot", "/tmp/hpcsched-node-node3/run",
        "--storage-opt", f"overlay.imagestore={tmp_path}/store", "images"]
    assert images.lock_path == "/tmp/hpcsched-node-node3/run/hpcsched-image-load.lock"
    assert node_storage_paths("node3", env).graphroot == "/tmp/hpcsched-node-node3/graph"
    assert node_images("node3", {"HOME": str(tmp_path)}).podman.argv("images") == ["podman", "images"]


SINFO = "node1 idle debug*\nnode2 mix debug*\nnode3 drain debug*\nnode4 idle* debug*\nnode5 idle wide\n"


def test_check_reaches_the_available_nodes_of_the_partition_and_skips_the_others() -> None:
    up, skipped = check.partition_nodes(SINFO, "")
    assert up == ["node1", "node2"] and [(v.node, v.status) for v in skipped] == [("node3", "skip"), ("node4", "skip")]
    assert check.partition_nodes(SINFO, "wide")[0] == ["node5"]


def test_check_names_the_node_that_lacks_the_image_with_the_fix() -> None:
    probes = check.parse_probes("\n".join(json.dumps(p) for p in (
        {"node": "node1", "id": NEW, "archive_id": None},
        {"node": "node2", "id": None, "archive_id": NEW},
        {"node": "node3", "id": None, "archive_id": None},
        {"node": "node5", "id": None, "archive_id": NEW, "error": "podman image exists failed: Error: x"})) + "\nsrun: x\n")
    verdicts = [check.verdict(n, IMAGE, probes.get(n)) for n in ("node1", "node2", "node3", "node4", "node5")]
    assert [v.status for v in verdicts] == ["ok", "loadable", "missing", "missing", "missing"]
    assert verdicts[4].found == f"Podman on node5 cannot look for {IMAGE}: podman image exists failed: Error: x"
    assert verdicts[2].found == f"{IMAGE} is not in Podman's storage on node3 and no archive of it is pushed"
    assert f"hpcsched image push {IMAGE}" in verdicts[2].fix and "no answer from node4" in verdicts[3].found
    assert check.exit_status(verdicts) == 1 and check.exit_status(verdicts[:2]) == 0


def test_push_without_a_shared_directory_is_a_usage_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCSCHED_IMAGE_DIR", raising=False)
    result = CliRunner().invoke(cli, ["image", "push", IMAGE])
    assert result.exit_code == 2
    assert "--dir: no shared image directory: pass --dir or set image_dir (HPCSCHED_IMAGE_DIR" in result.output
