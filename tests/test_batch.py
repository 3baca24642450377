"""`jaxstyle batch`: batch == single, buckets, resume, bad images, SIGKILL, sharding, multi-process, CLI.

Tiny images (32 px long side) and a shallow VGG (layers up to relu2_2) keep compile and run times
short; the batching, sharding and bookkeeping under test do not depend on the depth.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from jaxstyle import prepare
from jaxstyle.batch import (
    BatchStarted,
    BatchStep,
    BucketEngine,
    ImageFinished,
    Manifest,
    batch_ladder,
    bucket_shape,
    discover_inputs,
    manifest_name,
    parse_shard,
    read_manifests,
    run_batch,
    select_shard,
    shard_of,
    stylize_batch,
)
from jaxstyle.config import BatchConfig, StyleConfig
from jaxstyle.errors import NumericalError, OutputError, UsageError
from jaxstyle.io.decode import load_image, read_image_metadata
from jaxstyle.prepare import fit_long_side
from jaxstyle.stylization import stylize
from jaxstyle.weights import load_weights

SHALLOW = {"style_layers": ("relu1_1", "relu2_1"), "content_layers": ("relu2_2",)}
FAST = StyleConfig(max_size=32, iterations=3, **SHALLOW)
REPO = Path(__file__).resolve().parents[1]

# The shallow layers above, as CLI options.
SHALLOW_ARGS = ["--set", "style_layers=relu1_1,relu2_1", "--set", "content_layers=relu2_2"]
# Runs the real CLI in a child process; append SHALLOW_ARGS to the batch command.
FAST_CLI = textwrap.dedent(
    """
    import sys
    from jaxstyle.cli.app import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def weights():
    return load_weights()


def random_image(shape, seed) -> np.ndarray:
    return np.random.default_rng(seed).random((*shape, 3), dtype=np.float32)


def write_png(path: Path, shape, seed) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((random_image(shape, seed) * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Four photos (three landscape 40x60, one portrait 60x40) and a style image."""
    photos = tmp_path / "photos"
    for index, shape in enumerate([(40, 60), (40, 60), (60, 40), (40, 60)]):
        write_png(photos / f"p{index}.png", shape, index)
    style = write_png(tmp_path / "style.png", (50, 50), 99)
    return photos, style


def records(output: Path) -> list[dict]:
    lines = []
    for path in sorted(output.glob("manifest*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:  # a line being written by a running worker
                pass
    return [r for r in lines if "input" in r]


def done_counts(output: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records(output):
        if record["status"] == "done":
            counts[record["input"]] = counts.get(record["input"], 0) + 1
    return counts


def run_python(code: str, *args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        check=False,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


# --------------------------------------------------------------------------------------- equivalence


# Both colour modes that recolour the style per image are covered. With the histogram-matched style,
# on an AMD EPYC host (no AMX) a few pixels of the portrait image amplify float32 rounding
# (vmapped and single convolutions sum in different orders): from 1e-7 after two iterations to
# 2e-4 (L-BFGS) and 6e-4 (Adam) after three, while every other pixel agrees to 1e-7. Two
# iterations test the batching there; the rounding growth is the optimiser's, not the batch's.
@pytest.mark.parametrize(
    ("optimizer", "colour", "iterations"), [("lbfgs", "none", 3), ("adam", "luminance", 3), ("lbfgs", "histogram", 2)]
)
def test_batch_equals_single(weights, optimizer, colour, iterations):
    # Two landscape images share a batch of 2; the portrait one runs as a batch of 1 (vmapped).
    contents = [random_image((40, 60), 1), random_image((40, 60), 2), random_image((60, 40), 3)]
    style = random_image((50, 50), 4)
    config = FAST.replace(optimizer=optimizer, preserve_color=colour, init="blend", seed=7, iterations=iterations)
    scores = {}  # each image's own loss terms and ratios, from the last report of its batch
    collect = lambda event: scores.update(event.scores or ())
    batch = stylize_batch(contents, style, config, weights=weights, batch=BatchConfig(batch_size=2), callback=collect)
    assert sorted(scores) == [0, 1, 2]
    for index, (content, result) in enumerate(zip(contents, batch)):
        reports = []
        single = stylize(content, style, config, weights=weights, callback=reports.append)
        assert result.shape == single.shape == (*fit_long_side(content.shape[:2], 32), 3)
        np.testing.assert_allclose(result, single, atol=1e-4)
        assert np.abs(result - content_resized(content)).max() > 1e-2  # it did stylize
        assert scores[index] == pytest.approx(reports[-1].scores, rel=1e-3)


def test_scores_of_a_padded_batch_are_each_images_own(weights):
    """Three images in a batch of four (one padding copy) score as each alone in a batch of one."""
    contents = [random_image((40, 60), seed) for seed in (5, 6, 7)]
    style = random_image((50, 50), 8)
    scores = {size: {} for size in (4, 1)}
    for size, collected in scores.items():
        stylize_batch(
            contents,
            style,
            FAST,
            weights=weights,
            batch=BatchConfig(batch_size=size),
            callback=lambda e, c=collected: c.update(e.scores or ()),
        )
    assert sorted(scores[4]) == [0, 1, 2]
    assert len({round(own["style_ratio"], 6) for own in scores[4].values()}) == 3  # three different images
    for index in range(3):
        assert scores[4][index] == pytest.approx(scores[1][index], rel=1e-3)


def test_batch_scores_match_values_derived_by_hand(weights):
    """Not through the loss code the batch shares with single images: the TV ratio from the result
    and the style image in NumPy, each weighted term from its ratio and the config's weight (ratio
    units), and the total as their sum."""
    from jaxstyle.io.resize import resize_to

    contents = [random_image((40, 60), seed) for seed in (11, 12)]
    style = random_image((50, 50), 13)
    scores = {}
    results = stylize_batch(
        contents,
        style,
        FAST,
        weights=weights,
        batch=BatchConfig(batch_size=2),
        callback=lambda e: scores.update(e.scores or ()),
    )

    def tv(image):  # "l2": squared differences of neighbours, summed
        image = np.asarray(image, np.float64)
        return np.sum(np.diff(image, axis=0) ** 2) + np.sum(np.diff(image, axis=1) ** 2)

    assert FAST.loss.loss_units == "ratio" and FAST.loss.tv_kind == "l2"
    for index, result in enumerate(results):
        own = scores[index]
        # the style image as the run sizes it (`style_scale`), then at the output's size
        (sized,) = prepare.styles_for(prepare.make_style_set(style, None, FAST), None, result.shape[:2], FAST)
        reference = resize_to(sized, *result.shape[:2])
        assert own["tv_ratio"] == pytest.approx(tv(result) / tv(reference), rel=1e-3)
        assert own["content"] == pytest.approx(FAST.loss.content_weight * own["content_ratio"], rel=1e-5)
        assert own["style"] == pytest.approx(FAST.loss.resolved_style_weight * own["style_ratio"], rel=1e-5)
        assert own["tv"] == pytest.approx(FAST.loss.tv_weight * own["tv_ratio"], rel=1e-5)
        assert own["total"] == pytest.approx(own["content"] + own["style"] + own["tv"], rel=1e-5)
        assert own["content_ratio"] > 0 and own["style_ratio"] > 0


def content_resized(content):
    from jaxstyle.io.resize import resize_to

    return resize_to(content, *fit_long_side(content.shape[:2], 32))


# --------------------------------------------------------------------------------------- discovery, shards


def test_discover_folder_glob_names_and_exclusions(tmp_path):
    root = tmp_path / "in"
    for rel in ["b.png", "a.jpg", "a.png", "sub/c.jpeg", ".hidden.png", "notes.txt", "out/old.png"]:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    items = discover_inputs(root, output_dir=root / "out")
    assert [i.rel for i in items] == ["a.jpg", "a.png", "b.png"]  # sorted, not recursive, no hidden/txt/output
    assert [i.output for i in items] == ["a.jpg.png", "a.png.png", "b.png"]  # a.jpg and a.png would collide
    deep = discover_inputs(str(root / "**" / "*.jp*g"), output_format="jpg")
    assert [(i.rel, i.output) for i in deep] == [("a.jpg", "a.jpg"), ("sub/c.jpeg", "sub/c.jpg")]
    with pytest.raises(Exception, match="no image files"):
        discover_inputs(str(root / "*.gif"))
    with pytest.raises(Exception, match="does not exist"):
        discover_inputs(tmp_path / "missing")
    with pytest.raises(UsageError, match="unknown output format"):
        discover_inputs(root, output_format="xyz")


def test_shards_cover_everything_once():
    class Item:
        def __init__(self, rel):
            self.rel = rel

    items = [Item(f"dir{i % 7}/img{i:05d}.jpg") for i in range(1000)]
    shards = [select_shard(items, (i, 4)) for i in range(4)]
    names = [item.rel for shard in shards for item in shard]
    assert sorted(names) == sorted(item.rel for item in items)  # all, no duplicates
    assert all(200 < len(shard) < 300 for shard in shards)  # roughly balanced
    # The shard is a function of the relative path alone (sha256), so adding files never moves an
    # existing one and every worker, machine and Python version agrees on it.
    for rel in ("a.jpg", "dir/b.png"):
        assert shard_of(rel, 4) == int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "big") % 4
    assert parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0"):
        with pytest.raises(UsageError):
            parse_shard(bad)
    assert manifest_name((0, 1)) == "manifest.jsonl"
    assert manifest_name((2, 4)) == "manifest.shard-2-of-4.jsonl"


def test_bucket_policy_and_batch_ladder():
    assert bucket_shape((21, 32)) == (21, 32)
    assert bucket_shape((21, 32), 16) == (32, 32)
    assert bucket_shape((341, 512), 32) == (352, 512)
    assert batch_ladder(8) == (1, 2, 4, 8)
    assert batch_ladder(6) == (1, 2, 4, 6)
    assert batch_ladder(3, devices=4) == (4,)  # rounded up to a multiple of the devices
    assert batch_ladder(8, devices=4) == (4, 8)
    assert batch_ladder(1) == (1,)


def test_buckets_keep_each_images_aspect_ratio(tmp_path, weights):
    photos = tmp_path / "photos"
    shapes = {"wide.png": (40, 60), "wider.png": (38, 60), "tall.png": (60, 40), "square.png": (50, 50)}
    for index, (name, shape) in enumerate(shapes.items()):
        write_png(photos / name, shape, index)
    style = write_png(tmp_path / "style.png", (50, 50), 9)
    for multiple, expected_buckets in ((1, {(21, 32): 1, (20, 32): 1, (32, 21): 1, (32, 32): 1}), (16, {(32, 32): 4})):
        output = tmp_path / f"out{multiple}"
        events = []
        summary = run_batch(
            photos,
            output,
            [style],
            FAST,
            weights=weights,
            batch=BatchConfig(batch_size=2, bucket_multiple=multiple),
            callback=events.append,
        )
        started = next(e for e in events if isinstance(e, BatchStarted))
        assert started.buckets == expected_buckets
        assert (summary.done, summary.failed) == (4, 0)
        for name, (h, w) in shapes.items():
            out_h, out_w = load_image(output / name).size
            assert (out_h, out_w) == fit_long_side((h, w), 32)  # own size, aspect kept
            assert abs(out_w / out_h - w / h) < 0.05


# --------------------------------------------------------------------------------------- never lose work


def test_resume_after_interruption_completes_without_duplicates(folder, tmp_path, weights):
    photos, style = folder
    output = tmp_path / "out"

    def stop_in_second_batch(event):  # Ctrl-C while the second batch (p3 alone) is in flight
        if isinstance(event, BatchStep) and event.images == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(
            photos,
            output,
            [style],
            FAST,
            weights=weights,
            batch=BatchConfig(batch_size=2),
            callback=stop_in_second_batch,
        )
    # the first batch's two results were handed to the writer: written and recorded on the way out
    assert done_counts(output) == {"p0.png": 1, "p1.png": 1}
    summary = run_batch(photos, output, [style], FAST, weights=weights, batch=BatchConfig(batch_size=2))
    assert (summary.total, summary.skipped, summary.done, summary.failed) == (4, 2, 2, 0)
    assert done_counts(output) == {f"p{i}.png": 1 for i in range(4)}
    assert sorted(p.name for p in output.glob("*.png")) == [f"p{i}.png" for i in range(4)]
    again = run_batch(photos, output, [style], FAST, weights=weights, batch=BatchConfig(batch_size=2))
    assert (again.skipped, again.done) == (4, 0)
    assert done_counts(output) == {f"p{i}.png": 1 for i in range(4)}


def test_corrupt_images_are_recorded_and_the_batch_goes_on(folder, tmp_path, weights):
    photos, style = folder
    (photos / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    truncated = write_png(tmp_path / "t.png", (40, 60), 5).read_bytes()
    (photos / "truncated.png").write_bytes(truncated[: len(truncated) // 2])  # header fine, pixels cut
    output = tmp_path / "out"
    summary = run_batch(photos, output, [style], FAST, weights=weights, batch=BatchConfig(batch_size=2))
    assert (summary.done, summary.failed) == (4, 2)
    failed = {r["input"]: r["error"] for r in records(output) if r["status"] == "failed"}
    assert set(failed) == {"garbage.jpg", "truncated.png"}
    assert all(error and "\n" not in error and "truncated.png" in failed["truncated.png"] for error in failed.values())
    assert sorted(p.name for p in output.glob("*.png")) == [f"p{i}.png" for i in range(4)]
    rerun = run_batch(photos, output, [style], FAST, weights=weights, batch=BatchConfig(batch_size=2))
    assert (rerun.skipped, rerun.done, rerun.failed) == (4, 0, 2)  # failures are retried, still failing


def test_changed_settings_or_unknown_files_are_not_clobbered(folder, tmp_path, weights):
    photos, style = folder
    output = tmp_path / "out"
    run_batch(photos, output, [style], FAST, weights=weights, batch=BatchConfig(batch_size=2))
    before = (output / "p0.png").read_bytes()
    changed = FAST.replace(iterations=FAST.optimize.iterations + 3)
    with pytest.raises(OutputError, match="other settings"):
        run_batch(photos, output, [style], changed, weights=weights, batch=BatchConfig(batch_size=2))
    assert (output / "p0.png").read_bytes() == before
    redo = run_batch(photos, output, [style], changed, weights=weights, batch=BatchConfig(batch_size=2), overwrite=True)
    assert redo.done == 4 and (output / "p0.png").read_bytes() != before

    other = tmp_path / "other"
    other.mkdir()
    (other / "p1.png").write_bytes(b"someone else's file")
    with pytest.raises(OutputError, match="no manifest"):
        run_batch(photos, other, [style], FAST, weights=weights, batch=BatchConfig(batch_size=2))
    assert (other / "p1.png").read_bytes() == b"someone else's file"


def test_manifest_survives_a_torn_last_line(tmp_path):
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"input": "a.png", "status": "done", "time": 1}\n{"input": "b.png", "sta')  # cut by a crash
    with Manifest(path) as manifest:
        manifest.write([{"input": "c.png", "status": "failed", "time": 2}])
        with pytest.raises(OutputError, match="already writing"):
            Manifest(path).__enter__()  # a second worker on the same shard is refused
    latest = read_manifests(tmp_path)
    assert {k: v["status"] for k, v in latest.items()} == {"a.png": "done", "c.png": "failed"}


def test_a_diverging_batch_is_retried_image_by_image():
    class Runner:
        def stylize_bucket(self, shape, items, size, callback=None):
            if "bad" in items:
                raise NumericalError("the loss became NaN/inf")
            return [f"ok {item}" for item in items]

    engine = BucketEngine.__new__(BucketEngine)  # the policy around a stand-in method
    engine.runner, engine.ladder = Runner(), (1, 2, 4)
    results = engine.run_isolating_failures((16, 16), ["a", "bad", "c"], None)
    assert results == ["ok a", "the loss became NaN/inf", "ok c"]


# With "stall", the worker stops for a minute at its first finished image (reported when the next
# batch is about to start): the test SIGKILLs it there, then runs it again to completion.
KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from jaxstyle.batch import ImageFinished, run_batch
    from jaxstyle.config import BatchConfig, StyleConfig
    config = StyleConfig(max_size=32, iterations=3, optimizer="adam",
                         style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_2",))
    def stall(event):
        if sys.argv[4] == "stall" and isinstance(event, ImageFinished):
            time.sleep(60)
    run_batch(sys.argv[1], sys.argv[2], [sys.argv[3]], config, batch=BatchConfig(batch_size=2), callback=stall)
    """
)


@pytest.mark.slow
def test_kill_minus_9_loses_at_most_the_batch_in_flight(tmp_path):
    photos = tmp_path / "photos"
    for index in range(6):
        write_png(photos / f"k{index}.png", (40, 60), index)
    style = write_png(tmp_path / "style.png", (50, 50), 9)
    output = tmp_path / "out"
    args = [str(photos), str(output), str(style)]
    with open(tmp_path / "stderr.txt", "wb") as log:
        process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, *args, "stall"], cwd=REPO, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (output / "manifest.jsonl").exists() and done_counts(output):
                break
            time.sleep(0.02)
        assert process.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    done_before = done_counts(output)
    # killed once the first result was written: what is lost is at most the batches in flight,
    # the one being written and the one in the network (two of two images), nothing after them
    assert len(done_before) >= 1
    started = {r["input"] for r in records(output) if r["status"] == "started"}
    assert started <= {"k0.png", "k1.png", "k2.png", "k3.png"}
    lost = min({f"k{i}.png" for i in range(6)} - set(done_before))
    (output / f".{lost}.abc123.tmp").write_bytes(b"half an image")  # as a kill in save_image leaves

    finished = run_python(KILL_SCRIPT, *args, "run")
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert done_counts(output) == {f"k{i}.png": 1 for i in range(6)}  # complete, no duplicates
    assert sorted(p.name for p in output.iterdir() if p.suffix == ".png") == [f"k{i}.png" for i in range(6)]
    assert not list(output.glob(".*.tmp"))


# --------------------------------------------------------------------------------------- devices, hosts


SHARDING_SCRIPT = textwrap.dedent(
    """
    import json, os
    import jax, numpy as np
    assert jax.device_count() == 4, jax.devices()
    from jaxstyle.batch import BucketEngine, stylize_batch
    from jaxstyle.config import BatchConfig, StyleConfig
    from jaxstyle.step import init_opt_state, jitted_run_steps, run_steps
    from jaxstyle.prepare import make_style_set
    from jaxstyle.weights import load_weights

    weights = load_weights()
    config = StyleConfig(max_size=32, iterations=4, optimizer="adam",
                         style_layers=("relu1_1", "relu2_1"), content_layers=("relu2_2",))
    rng = np.random.default_rng(0)
    contents = [rng.random((40, 60, 3), np.float32) for _ in range(5)]
    style = rng.random((50, 50, 3), np.float32)
    out = {}
    for colour, count in (("none", 5), ("histogram", 4)):  # shared / per-image style targets
        cfg = config.replace(preserve_color=colour)
        four = stylize_batch(contents[:count], style, cfg, weights=weights, batch=BatchConfig(batch_size=3))  # -> batches of 4
        one = stylize_batch(contents[:count], style, cfg, weights=weights, batch=BatchConfig(batch_size=4), devices=jax.devices()[:1])
        out[colour] = max(float(np.abs(a - b).max()) for a, b in zip(four, one))

    engine = BucketEngine(config, make_style_set(style), weights=weights)
    prepared = [engine.prepare(i, c) for i, c in enumerate(contents[:4])]
    runner = engine.runner
    start, targets, stepper = runner.device_batch(prepared[0][0], [p for _, p in prepared], 4)
    state = init_opt_state(start, stepper, 0.02)
    kwargs = dict(stepper=stepper, steps=1)
    hlo = jitted_run_steps().lower(runner.params, start, state, targets, **kwargs).compile().as_text()
    image, state, terms = run_steps(runner.params, start, state, targets, **kwargs)
    out["image_devices"] = len(image.sharding.device_set)
    out["image_spec"] = image.sharding.spec == jax.sharding.PartitionSpec("batch")
    out["shard_shapes"] = sorted({tuple(s.data.shape) for s in image.addressable_shards})
    out["content_devices"] = len(next(iter(targets["content"].values())).sharding.device_set)
    out["collectives"] = [op for op in ("all-gather", "all-reduce", "all-to-all", "collective-permute") if op in hlo]
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_sharded_over_four_devices_equals_one_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    result = run_python(SHARDING_SCRIPT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["none"] < 1e-5 and out["histogram"] < 1e-5
    assert out["image_devices"] == 4 and out["content_devices"] == 4
    assert out["image_spec"]  # split along the batch axis
    assert out["shard_shapes"] == [[1, 21, 32, 3]]  # each device holds one image of the batch of 4
    assert out["collectives"] == []  # data parallel: no device talks to another


@pytest.mark.slow
def test_two_concurrent_shard_workers_split_the_folder(tmp_path):
    """Two workers at once (as a SLURM array or an indexed job runs them), coordinated by nothing
    but --shard: each does its own share, none twice. (This replaced --distributed, which only
    computed the same i/n from jax.distributed: the engine has no collectives.)"""
    photos = tmp_path / "photos"
    for index in range(6):
        write_png(photos / f"d{index}.png", (40, 60), index)
    style = write_png(tmp_path / "style.png", (50, 50), 9)
    output = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    common = [str(style), "-i", str(photos), "-o", str(output)]
    common += ["--max-size", "32", "--iterations", "2", "--optimizer", "adam"]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FAST_CLI, "-q", "batch", *common, *SHALLOW_ARGS, "--shard", f"{index}/2"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    outputs = [process.communicate(timeout=180) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], [err[-2000:] for _, err in outputs]
    manifests = sorted(p.name for p in output.glob("manifest*.jsonl"))
    assert manifests == ["manifest.shard-0-of-2.jsonl", "manifest.shard-1-of-2.jsonl"]
    per_process = [
        {json.loads(line)["input"] for line in (output / name).read_text().splitlines() if '"done"' in line}
        for name in manifests
    ]
    assert per_process[0] and per_process[1] and not per_process[0] & per_process[1]
    assert per_process[0] | per_process[1] == {f"d{i}.png" for i in range(6)}
    assert done_counts(output) == {f"d{i}.png": 1 for i in range(6)}


# --------------------------------------------------------------------------------------- CLI


@pytest.fixture
def fast_cli(monkeypatch):
    from jaxstyle.cli.app import app

    return lambda *args: CliRunner().invoke(app, ["batch", *map(str, args), *SHALLOW_ARGS])


def test_cli_runs_reports_failures_and_resumes(folder, tmp_path, fast_cli):
    photos, style = folder
    (photos / "broken.jpg").write_bytes(b"not an image")
    output = tmp_path / "out"
    args = [style, "-i", photos, "-o", output, "--max-size", "32", "--iterations", "3", "--batch-size", "2"]
    first = fast_cli(*args)
    assert first.exit_code == 8, first.output
    assert "4 done, 1 failed of 5" in first.output
    assert "failed: broken.jpg:" in first.output and "Traceback" not in first.output
    # each result's own loss terms and ratios, in the manifest and in the image
    done = [record for record in records(output) if record["status"] == "done"]
    assert len(done) == 4
    for record in done:
        assert {"total", "content_ratio", "style_ratio", "tv_ratio"} <= set(record["losses"])
        assert all(np.isfinite(value) for value in record["losses"].values())
        stored = json.loads(read_image_metadata(output / record["output"])["jaxstyle.losses"])
        assert stored == pytest.approx(record["losses"])
    # ... and they are that image's, as the library's batch scores them (p0, p1 and p3 share a
    # bucket: p0 and p1 run as a batch of two, p3 alone)
    names = sorted(record["input"] for record in done)
    expected = {}
    contents = [load_image(photos / name).rgb for name in names]
    collect = lambda event: expected.update(event.scores or ())
    stylize_batch(contents, load_image(style).rgb, FAST, batch=BatchConfig(batch_size=2), callback=collect)
    for index, name in enumerate(names):
        losses = next(record["losses"] for record in done if record["input"] == name)
        assert losses == pytest.approx(expected[index], rel=1e-4), name
    second = fast_cli(*args)
    assert second.exit_code == 8 and "0 done, 4 already done (skipped), 1 failed of 5" in second.output
    (photos / "broken.jpg").unlink()
    third = fast_cli(*args, "--shard", "0/1")
    assert third.exit_code == 0 and "0 done, 4 already done (skipped) of 4" in third.output
    changed = fast_cli(*args, "--seed", "3")
    assert changed.exit_code == 6 and "other settings; pass --overwrite" in changed.output


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--shard", "4/4"], 2, "--shard must look like i/n"),
        (["--batch-size", "0"], 2, "--batch-size must be at least 1"),
        (["--init", "image"], 2, "does not support --init image"),
        (["--style-weights", "1,2"], 2, "1 style images but 2 style weights"),
        (["--format", "gif"], 2, "unknown output format"),
        (["-i", "nowhere/"], 3, "does not exist"),
    ],
)
def test_cli_errors_are_one_line(folder, tmp_path, capsys, extra, code, message):
    """Through the console entry point, as a user runs it (option checks are click's, which
    CliRunner would print with click's usage text)."""
    from jaxstyle.cli.app import main

    photos, style = folder
    argv = ["batch", style, "-i", photos, "-o", tmp_path / "out", *extra, *SHALLOW_ARGS]
    assert main(list(map(str, argv))) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.count("error:") == 1


def test_cli_ctrl_c_says_how_to_resume(folder, tmp_path, fast_cli, monkeypatch):
    import jaxstyle.batch

    def interrupted(*args, callback, **kwargs):
        callback(
            BatchStarted(
                total=4, already_done=1, to_do=3, buckets={(21, 32): 3}, devices=1, shard=(0, 1), manifest=None
            )
        )
        callback(ImageFinished("p1.png", "p1.png", "done", None, 1, 0, 2, 1.0, 1.0, 2.0))
        raise KeyboardInterrupt

    monkeypatch.setattr(jaxstyle.batch, "run_batch", interrupted)
    photos, style = folder
    result = fast_cli(style, "-i", photos, "-o", tmp_path / "out")
    assert result.exit_code == 130
    assert "interrupted: 1 image(s) finished in this run, 1 earlier" in result.output
    assert "Run the same command again to resume" in result.output and "Traceback" not in result.output
