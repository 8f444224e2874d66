"""``hpcsched image push`` shows how far the transfer got on a terminal: the bytes of the archive
``podman save`` has written so far (a thread watches the file grow) and of the compression, as
a share of the image's size; no line when stderr is not a terminal or with --quiet (issue 14)."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path

from test_images_unit import IMAGE, NEW, FakePodman

from hpcsched.cli.image import push_progress
from hpcsched.images import distribute
from hpcsched.images.podman import Podman, PodmanResult
from hpcsched.images.transfer import progress_text, watching

Seen = list[tuple[str, int, int]]


class SizedPodman(FakePodman):
    """FakePodman whose image is ``size`` bytes: inspect --format {{.Size}} says so, save writes that many."""

    def __init__(self, size: int) -> None:
        super().__init__({IMAGE: NEW})
        self.size = size

    def __call__(self, argv: Sequence[str]) -> PodmanResult:
        if "{{.Size}}" in argv:
            return PodmanResult(tuple(argv), 0, f"{self.size}\n", "")
        if "save" in argv:
            Path(argv[argv.index("--output") + 1]).write_bytes(b"x" * self.size)
            return PodmanResult(tuple(argv), 0, "", "")
        return super().__call__(argv)


def test_a_push_reports_the_saved_bytes_against_the_image_size(tmp_path: Path) -> None:
    seen: Seen = []
    distribute.push_archive(Podman((), SizedPodman(3000)), IMAGE, str(tmp_path), False, lambda: 1.0,
                            lambda *r: seen.append(r))
    assert seen[-1] == (f"saving {IMAGE}", 3000, 3000)


def test_a_compressed_push_also_reports_the_compression(tmp_path: Path) -> None:
    seen: Seen = []
    distribute.push_archive(Podman((), SizedPodman(3000)), IMAGE, str(tmp_path), True, lambda: 1.0,
                            lambda *r: seen.append(r))
    assert [r for r in seen if r[0].startswith("compressing")][-1] == (f"compressing {IMAGE}", 3000, 3000)


def test_the_watch_reports_a_file_while_another_writer_makes_it_grow(tmp_path: Path) -> None:
    """The writer waits until the watch has seen each size it wrote: every size is reported."""
    path = tmp_path / "archive.tar"
    seen: Seen = []
    observed = threading.Condition()

    def report(stage: str, done: int, total: int) -> None:
        with observed:
            seen.append((stage, done, total))
            observed.notify_all()

    with watching(str(path), "saving", 300, report, every=0.001), path.open("wb") as f:
        for size in (100, 200, 300):
            f.write(b"x" * 100)
            f.flush()
            with observed:
                assert observed.wait_for(lambda wanted=size: ("saving", wanted, 300) in seen, timeout=30)
    assert {r[1] for r in seen} >= {100, 200, 300}


def test_the_progress_text_says_bytes_and_share() -> None:
    assert progress_text("saving x", 1 << 29, 1 << 30) == "saving x: 0.50 of 1.00 GiB (50%)"
    assert progress_text("saving x", 1 << 30, 0) == "saving x: 1.00 GiB"
    assert progress_text("saving x", (1 << 30) + 5, 1 << 30).endswith("(99%)")  # an archive a little larger


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_line_shows_on_a_terminal_only_and_not_with_quiet() -> None:
    shown, quiet, piped = Terminal(), Terminal(), io.StringIO()
    for stream, be_quiet in ((shown, False), (quiet, True), (piped, False)):
        progress = push_progress(be_quiet, stream)
        progress.update("saving x: 0.50 of 1.00 GiB (50%)")
        progress.done()
    assert shown.getvalue() == "\rsaving x: 0.50 of 1.00 GiB (50%)\n"
    assert (quiet.getvalue(), piped.getvalue()) == ("", "")
