"""`jaxstyle batch --engine ray`: the same files, manifest and guarantees as the local engine.

One local Ray instance (2 CPUs) serves the module; each run starts its own actors on it. Tiny
folders (two sizes, 64 px, the fast method; one gatys run at 32 px with a shallow VGG) keep the
actors' set-up and compiles short.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from child_signals import sigint_not_ignored
from PIL import Image

from jaxstyle.batch import discover_inputs, read_manifests, run_batch
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.io.decode import read_image_metadata

ray = pytest.importorskip("ray")

from jaxstyle.batch.ray_actor import Stylizer
from jaxstyle.batch.ray_engine import run_ray_batch

REPO = Path(__file__).resolve().parents[1]
FAST = StyleConfig(method="fast", max_size=64)
SHALLOW = {"style_layers": ("relu1_1", "relu2_1"), "content_layers": ("relu2_2",)}
GATYS = StyleConfig(max_size=32, iterations=2, **SHALLOW)
SHALLOW_ARGS = ["--set", "style_layers=relu1_1,relu2_1", "--set", "content_layers=relu2_2"]
CLI = textwrap.dedent(
    """
    import sys
    from jaxstyle.cli.app import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs for the whole module; its address, for a CLI that joins it."""
    with warnings.catch_warnings():
        # JAX warns at any fork once its threads run (earlier tests ran it); Ray forks only to exec.
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def write_png(path: Path, shape, seed) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).random((*shape, 3)) * 255
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def make_folder(root: Path, count: int = 6) -> tuple[Path, Path]:
    """``count`` photos of two sizes (landscape and portrait), a style image."""
    photos = root / "photos"
    for index in range(count):
        write_png(photos / f"i{index}.png", (60, 90) if index % 2 else (90, 70), index)
    return photos, write_png(root / "style.png", (80, 80), 99)


def records(output: Path) -> list[dict]:
    lines = (output / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def done_counts(output: Path) -> Counter:
    return Counter(r["input"] for r in records(output) if r.get("status") == "done")


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.int16)


def assert_same_as_local(ray_out: Path, local_out: Path, names) -> None:
    """Outputs within 1/255, the same metadata, and the same final manifest records."""
    mine, theirs = read_manifests(ray_out), read_manifests(local_out)
    assert set(mine) == set(theirs)
    for name in names:
        a, b = pixels(ray_out / name), pixels(local_out / name)
        assert a.shape == b.shape and np.abs(a - b).max() <= 1, name
        meta, other = read_image_metadata(ray_out / name), read_image_metadata(local_out / name)
        losses = [json.loads(m.pop("jaxstyle.losses", "null")) for m in (meta, other)]
        assert meta == other  # settings, inputs, hash
        assert losses[0] == (None if losses[1] is None else pytest.approx(losses[1], rel=1e-4))
    for key, record in mine.items():
        other = theirs[key]
        for field in ("status", "output", "error", "params_hash", "size"):
            assert record[field] == other[field], (key, field)
        if record["losses"] is None:
            assert other["losses"] is None
        else:
            assert record["losses"] == pytest.approx(other["losses"], rel=1e-3)


def test_fast_equals_local_records_corrupt_files_and_reruns_nothing(cluster, tmp_path):
    photos, style = make_folder(tmp_path)
    (photos / "broken.jpg").write_bytes(b"not an image")
    local = run_batch(photos, tmp_path / "local", [style], FAST)
    events = []
    summary = run_ray_batch(photos, tmp_path / "ray", [style], FAST, actors=2, callback=events.append)
    assert (summary.done, summary.failed, summary.total) == (local.done, local.failed, local.total) == (6, 1, 7)
    assert summary.failures == local.failures  # the same one line for the corrupt file
    names = [f"i{i}.png" for i in range(6)]
    assert_same_as_local(tmp_path / "ray", tmp_path / "local", names)
    lines = records(tmp_path / "ray")
    assert (
        lines[0]["event"] == "run"
        and lines[0]["params_hash"] == read_manifests(tmp_path / "local")["i0.png"]["params_hash"]
    )
    assert Counter(r["input"] for r in lines if r.get("status") == "started") == Counter(names)
    assert done_counts(tmp_path / "ray") == Counter(names)  # once each
    assert sum(type(e).__name__ == "ImageFinished" for e in events) == 7

    again = run_ray_batch(photos, tmp_path / "ray", [style], FAST, actors=2)
    assert (again.done, again.skipped, again.failed) == (0, 6, 1)  # the corrupt file is tried again
    assert done_counts(tmp_path / "ray") == Counter(names)
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == [*names, "manifest.jsonl"]


@pytest.mark.slow
def test_gatys_equals_local(cluster, tmp_path):
    photos, style = make_folder(tmp_path, count=3)
    batch = BatchConfig(batch_size=2)
    run_batch(photos, tmp_path / "local", [style], GATYS, batch=batch)
    summary = run_ray_batch(photos, tmp_path / "ray", [style], GATYS, batch=batch, actors=1)
    assert summary.done == 3
    assert_same_as_local(tmp_path / "ray", tmp_path / "local", [f"i{i}.png" for i in range(3)])
    assert all(r["losses"]["total"] > 0 for r in read_manifests(tmp_path / "ray").values())


class Crashing(Stylizer):
    """Kills its own process on one image, the first time only (a marker file remembers)."""

    marker: Path
    victim = "i3.png"

    def before(self, item) -> None:
        if item.rel == self.victim and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)


def test_a_killed_actor_is_retried_without_duplicates(cluster, tmp_path):
    photos, style = make_folder(tmp_path)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    crashing = type("Crashing", (Crashing,), {"marker": tmp_path / "crashed"})
    summary = run_ray_batch(photos, tmp_path / "out", [style], FAST, actors=2, actor_class=crashing)
    assert (tmp_path / "crashed").exists()  # it did die
    names = [f"i{i}.png" for i in range(6)]
    assert (summary.done, summary.failed) == (6, 0)
    assert done_counts(tmp_path / "out") == Counter(names)  # every image exactly once
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [*names, "manifest.jsonl"]
    for name in names:
        assert pixels(tmp_path / "out" / name).shape[:2] in ((43, 64), (64, 50))


class AlwaysCrashing(Stylizer):
    """Kills its own process on one image every time (a file that crashes the decoder, say)."""

    def before(self, item) -> None:
        if item.rel == "i1.png":
            os._exit(1)


def test_a_batch_that_always_kills_its_actor_stops_the_run(cluster, tmp_path):
    """It ends (Ray would retry forever by default) with one line saying how to resume."""
    photos, style = make_folder(tmp_path, count=2)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with pytest.raises(RuntimeError, match="the Ray job failed .* run the same command to resume"):
        run_ray_batch(photos, tmp_path / "out", [style], FAST, actors=1, actor_class=AlwaysCrashing)
    assert "i1.png" not in done_counts(tmp_path / "out")
    assert {r["input"] for r in records(tmp_path / "out") if r.get("status") == "started"} == {"i0.png", "i1.png"}


def test_uri_input_and_output(cluster, tmp_path):
    """Inputs and outputs through pyarrow's filesystems (file:// here; s3:// and gs:// alike)."""
    photos, style = make_folder(tmp_path, count=3)
    big = np.random.default_rng(5).random((300, 400, 3)) * 255  # decoded at 1/4 scale for 64 px
    Image.fromarray(big.astype(np.uint8)).save(photos / "j.jpg", quality=90)
    (photos / ".hidden.png").write_bytes((photos / "i0.png").read_bytes())
    (photos / "notes.txt").write_text("not an image")
    source, target = f"file://{photos}", f"file://{tmp_path / 'out'}"
    assert discover_inputs(source) == [
        type(item)(f"file://{item.path}", item.rel, item.output) for item in discover_inputs(photos)
    ]
    for pattern in ("**/i?.png", "*/i[12].png"):
        local = [i.rel for i in discover_inputs(f"{tmp_path}/{pattern}")]
        assert [i.rel for i in discover_inputs(f"file://{tmp_path}/{pattern}")] == local and local
    run_batch(photos, tmp_path / "local", [style], FAST)
    summary = run_ray_batch(source, target, [style], FAST, actors=1)
    assert summary.done == 4
    assert_same_as_local(tmp_path / "out", tmp_path / "local", [*(f"i{i}.png" for i in range(3)), "j.png"])
    assert not list((tmp_path / "out").glob(".*.tmp"))
    manifests = [p.name for p in (tmp_path / "out").glob("manifest*.jsonl")]
    assert manifests and all(name.startswith("manifest.ray-") for name in manifests)  # objects, not appends
    again = run_ray_batch(source, target, [style], FAST, actors=1)
    assert (again.done, again.skipped) == (0, 4)


@pytest.mark.slow
def test_ctrl_c_keeps_finished_images_and_a_rerun_completes(cluster, tmp_path):
    """The CLI in a child process with its own Ray; SIGINT once the first output is written."""
    photos, style = make_folder(tmp_path, count=8)
    output = tmp_path / "out"
    args = [str(style), "-i", str(photos), "-o", str(output), "--engine", "ray", "--actors", "2"]
    args += ["--max-size", "32", "--iterations", "40", "--batch-size", "1", "--optimizer", "adam", *SHALLOW_ARGS]
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "XLA_FLAGS")}
    with sigint_not_ignored():  # CI may start the tests with SIGINT ignored, and a child inherits that
        process = subprocess.Popen(
            [sys.executable, "-c", CLI, "batch", *args], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None and not list(output.glob("i*.png")):
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()[-2000:]
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted:" in err and "Run the same command again to resume" in err and "Traceback" not in err
    finished = sorted(p.name for p in output.glob("i*.png"))
    assert 1 <= len(finished) < 8
    for name in finished:  # complete images, none half-written
        assert pixels(output / name).shape[:2] in ((21, 32), (32, 25))
    assert not list(output.glob(".*.tmp"))
    done_before = done_counts(output)
    assert set(done_before) <= set(finished) and all(count == 1 for count in done_before.values())

    # the same command again, joining the module's Ray with --address: only what is missing
    rerun = subprocess.run(
        [sys.executable, "-c", CLI, "-q", "batch", *args, "--address", cluster],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert done_counts(output) == Counter(f"i{i}.png" for i in range(8))  # each once, in all
    assert sorted(p.name for p in output.glob("i*.png")) == sorted(f"i{i}.png" for i in range(8))


def test_without_ray_one_line_names_the_extra(tmp_path, capsys, monkeypatch):
    from jaxstyle.cli.app import main

    photos, style = make_folder(tmp_path, count=1)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    argv = ["batch", str(style), "-i", str(photos), "-o", str(tmp_path / "out"), "--engine", "ray"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pip install 'jaxstyle[ray]'" in err and "Traceback" not in err
    assert err.count("error:") == 1 and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_address_and_actors_need_the_ray_engine(tmp_path, capsys):
    from jaxstyle.cli.app import main

    photos, style = make_folder(tmp_path, count=1)
    argv = ["batch", str(style), "-i", str(photos), "-o", str(tmp_path / "out"), "--actors", "2"]
    assert main(argv) == 2
    assert "need --engine ray" in capsys.readouterr().err


def test_actor_sizes_follow_the_hardware():
    from jaxstyle.batch.ray_engine import CPUS_PER_ACTOR, actor_sizes

    def node(cpu, gpu=0, alive=True):
        return {"Alive": alive, "Resources": {"CPU": float(cpu), **({"GPU": float(gpu)} if gpu else {})}}

    # one per GPU, with the node's cores per GPU for reading and writing
    assert actor_sizes([node(32, 4), node(32, 4), node(8, alive=False)], None) == (8, None, 8)
    assert actor_sizes([node(4, 4)], None) == (4, None, 2)
    assert actor_sizes([node(2)], None) == (1, 2, 2)  # this laptop: one actor on both cores
    assert actor_sizes([node(16), node(16)], None) == (2 * 16 // CPUS_PER_ACTOR, CPUS_PER_ACTOR, 2)
    assert actor_sizes([node(2)], 2) == (2, 1, 2)  # the cores shared out, never oversubscribed
    assert actor_sizes([node(2)], 1) == (1, 2, 2)


def test_help_imports_no_ray():
    """`jaxstyle batch --help` (and every command's start) stays free of Ray and pyarrow."""
    code = "import sys\nfrom jaxstyle.cli.app import main\ncode = main(['batch', '--help'])\n"
    code += (
        "print('LOADED=' + ','.join(sorted({n.partition('.')[0] for n in sys.modules} & {'ray', 'pyarrow', 'jax'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "--engine" in result.stdout, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "LOADED="
