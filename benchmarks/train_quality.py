"""`jaxstyle train`'s quality against steps, judged on photos that were not in the training folder.

    python benchmarks/train_quality.py photos DIR          # the training folder (see below)
    python benchmarks/train_quality.py train --out RUN     # trains, keeping a copy of each checkpoint
    python benchmarks/train_quality.py judge --out RUN     # judges each kept step and the final file

Data (no download): the training folder is scikit-image's bundled sample images that are not among
the held-out photos (hubble_deep_field, retina, immunohistochemistry, camera, coins, moon, page,
grass, gravel, brick, text, clock, cell, horse, logo, colorwheel and stereo_motorcycle's left
view; grey ones as RGB) plus the six shared paintings that are not trained styles, used as
content. Held out: the six shared photos (astronaut, chelsea, china, coffee, flower, rocket), none
of which is in the training folder. The judge is `benchmarks/judge.py` (NumPy VGG19, max pooling)
at 512 px, as the issue's table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
STYLES = ("starry_night", "the_scream", "great_wave", "udnie")
HELD_OUT = ("astronaut", "chelsea", "china", "coffee", "flower", "rocket")
CONTENT_PAINTINGS = ("composition_vii", "dance_foyer", "mauclair_portrait", "shipwreck", "te_fare", "water_lilies")
SKIMAGE = (
    "hubble_deep_field", "retina", "immunohistochemistry", "camera", "coins", "moon", "page", "grass",
    "gravel", "brick", "text", "clock", "cell", "horse", "logo", "colorwheel",
)  # fmt: skip


def make_photos(folder: Path) -> None:
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = {name: getattr(skimage.data, name)() for name in SKIMAGE}
    images["motorcycle"] = skimage.data.stereo_motorcycle()[0]
    for name, image in images.items():
        a = np.asarray(image)
        if a.dtype == bool:
            a = a.astype(np.uint8) * 255
        if a.ndim == 2:
            a = np.stack([a] * 3, -1)
        a = a[..., :3]
        if a.dtype != np.uint8:
            a = (255 * (a - a.min()) / max(1e-9, a.max() - a.min())).astype(np.uint8)
        Image.fromarray(a).save(folder / f"{name}.jpg", quality=92)
    for name in CONTENT_PAINTINGS:
        shutil.copy(SHARED / "styles" / f"{name}.jpg", folder / f"painting_{name}.jpg")


def run_training(args) -> None:
    from jaxstyle.config import StyleConfig
    from jaxstyle.train.checkpoint import checkpoint_path
    from jaxstyle.train.driver import CheckpointSaved, TrainStep, train
    from jaxstyle.train.settings import TrainConfig

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        steps=args.steps, learning_rate=args.lr, batch_size=args.batch, held_out=0.0,
        checkpoint_every=args.every, sample_every=args.every, init=args.init,
    )  # fmt: skip
    style_config = StyleConfig().replace(content_weight=args.content_weight, pooling=args.pooling)
    log = open(out / "log.jsonl", "a")  # noqa: SIM115 - appended to for the whole run
    net = out / "net.safetensors"

    def callback(event):
        if isinstance(event, TrainStep):
            log.write(json.dumps({"step": event.step, "seconds": event.seconds, **event.terms}) + "\n")
            log.flush()
            if event.step % 10 == 0:
                print(event.step, f"{event.seconds:.2f}s", {k: round(v, 3) for k, v in event.terms.items()}, flush=True)
        elif isinstance(event, CheckpointSaved):
            shutil.copy(event.path, out / f"step_{event.step:06d}.checkpoint.safetensors")
        else:
            print(event, flush=True)

    began = time.perf_counter()
    train([SHARED / "styles" / f"{s}.jpg" for s in STYLES], args.photos, net, config, style_config, callback=callback)
    print("trained in", time.perf_counter() - began, "s; checkpoint", checkpoint_path(net))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=("photos", "train", "judge", "gallery"))
    parser.add_argument("--photos", default="/tmp/train_photos")
    parser.add_argument("--out", default="/tmp/train_run")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--content-weight", type=float, default=1.0)
    parser.add_argument("--json", default="benchmarks/results/train_quality.json")
    parser.add_argument("--pooling", default="avg", help="the VGG pooling of the training loss")
    parser.add_argument("--init", default="magenta", help="magenta, scratch or a network file to continue")
    args = parser.parse_args()
    if args.phase == "photos":
        make_photos(Path(args.photos))
    elif args.phase == "train":
        run_training(args)
    elif args.phase == "judge":
        judge_runs(args)
    else:
        gallery(args)


def network_of_checkpoint(checkpoint: Path, net: Path) -> Path:
    """A network file of a kept checkpoint's parameters, with the final file's styles."""
    from safetensors import safe_open

    from jaxstyle.nets import magenta_weights

    with safe_open(str(checkpoint), framework="numpy") as reader:
        flat = {n.removeprefix("params/"): reader.get_tensor(n) for n in reader.keys() if n.startswith("params/")}  # noqa: SIM118
    info = magenta_weights.read_trained_info(net)
    out = checkpoint.with_name(checkpoint.name.replace(".checkpoint", ""))
    styles = [{"name": s.name, "sha256": s.sha256} for s in info.styles]
    magenta_weights.save_trained(out, {"transformer": magenta_weights.unflatten(flat)}, styles, {}, overwrite=True)
    return out


def judge_runs(args) -> None:
    """Judge the arbitrary network ("fast, today"), each kept step and the final network on the
    held-out photos; time the trained and the arbitrary network side by side; write the JSON and
    the gallery row."""
    from judge import Reference, load_vgg

    from jaxstyle.config import StyleConfig
    from jaxstyle.io.decode import load_image
    from jaxstyle.stylization import stylize

    out = Path(args.out)
    net = out / "net.safetensors"
    steps = sorted(out.glob("step_*.checkpoint.safetensors"))
    networks = {int(p.name[5:11]): network_of_checkpoint(p, net) for p in steps}
    networks[args.steps] = net
    vgg = load_vgg()
    base = StyleConfig().replace(method="fast", max_size=512)
    results = []
    for photo in HELD_OUT:
        content = load_image(SHARED / "content" / f"{photo}.jpg").rgb
        for index, style_name in enumerate(STYLES):
            style_path = SHARED / "styles" / f"{style_name}.jpg"
            style = load_image(style_path).rgb
            arbitrary = stylize(content, [style], base)
            reference = Reference(content, style, arbitrary.shape[:2], vgg)
            row = {"photo": photo, "style": style_name, "arbitrary": reference.ratios(arbitrary)}
            for step, path in sorted(networks.items()):
                config = base.replace(model=str(path), builtin_style=str(index))
                row[f"step_{step}"] = reference.ratios(stylize(content, None, config))
            results.append(row)
            print(json.dumps(row), flush=True)
    summary = summarise(results, sorted(networks))
    timing = time_networks(net)
    report = {"styles": STYLES, "held_out": HELD_OUT, "training_photos": sorted(p.name for p in Path(args.photos).iterdir()),
              "judge": "benchmarks/judge.py at 512 px", "results": results, "summary": summary, "speed": timing}  # fmt: skip
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary, indent=1), json.dumps(timing))


def gallery(args, photo: str = "chelsea", style_index: int = 0) -> None:
    """The README's row: a held-out photo by the arbitrary network, the trained one and the
    optimisation (today's defaults), 512 px, with each one's judged ratios and time."""
    from judge import Reference, load_vgg
    from PIL import Image, ImageDraw

    from jaxstyle.config import StyleConfig
    from jaxstyle.io.decode import load_image
    from jaxstyle.io.encode import save_image
    from jaxstyle.stylization import stylize

    net = Path(args.out) / "net.safetensors"
    content = load_image(SHARED / "content" / f"{photo}.jpg").rgb
    style = load_image(SHARED / "styles" / f"{STYLES[style_index]}.jpg").rgb
    fast = StyleConfig().replace(method="fast", max_size=512)
    runs = {
        "arbitrary network": lambda: stylize(content, [style], fast),
        "trained network": lambda: stylize(content, None, fast.replace(model=str(net), builtin_style=str(style_index))),
        "optimisation": lambda: stylize(content, [style], StyleConfig().replace(max_size=512)),
    }
    pictures, rows = [], {}
    for name, run in runs.items():
        if name != "optimisation":  # the fast ones warm, as a second photo would run
            run()
        began = time.perf_counter()
        picture = run()
        rows[name] = {"seconds": round(time.perf_counter() - began, 2)}
        pictures.append(picture)
    reference = Reference(content, style, pictures[0].shape[:2], load_vgg())
    for name, picture in zip(runs, pictures):
        rows[name].update({k: round(v, 3) for k, v in reference.ratios(picture).items()})
    strip = np.concatenate([p[:, :, :3] for p in pictures], axis=1)
    image = Image.fromarray((strip * 255).round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for index, (name, row) in enumerate(rows.items()):
        text = f"{name}: style {row['style_ratio']:.2f}, content {row['content_ratio']:.2f}, {row['seconds']:.1f} s"
        draw.text((index * pictures[0].shape[1] + 6, 6), text, fill=(255, 255, 255))
    save_image("docs/gallery/train_row.jpg", np.asarray(image, np.float32) / 255, overwrite=True, jpeg_quality=88)
    Path(args.json).with_name("train_gallery.json").write_text(
        json.dumps({"photo": photo, "style": STYLES[style_index], **rows}, indent=1) + "\n"
    )
    print(json.dumps(rows))


def summarise(results, steps) -> dict:
    """Per style and per network: pairs within the targets (style <= 0.25 and content <= 0.35) and
    the ratios' medians."""
    summary = {}
    for key in ("arbitrary", *(f"step_{s}" for s in steps)):
        per_style = {}
        for style in STYLES:
            rows = [r[key] for r in results if r["style"] == style]
            within = sum(r["style_ratio"] <= 0.25 and r["content_ratio"] <= 0.35 for r in rows)
            per_style[style] = {
                "within_targets": f"{within}/{len(rows)}",
                "style_median": round(float(np.median([r["style_ratio"] for r in rows])), 3),
                "content_median": round(float(np.median([r["content_ratio"] for r in rows])), 3),
            }
        summary[key] = per_style
    return summary


def time_networks(net: Path, rounds: int = 7) -> dict:
    """Warm wall time of one 512 px fast stylization (the library's stylize): the trained network
    against the arbitrary one, alternating, medians."""
    from jaxstyle.config import StyleConfig
    from jaxstyle.io.decode import load_image
    from jaxstyle.stylization import stylize

    content = load_image(SHARED / "content" / "chelsea.jpg").rgb
    style = load_image(SHARED / "styles" / f"{STYLES[0]}.jpg").rgb
    base = StyleConfig().replace(method="fast", max_size=512)
    runs = {"arbitrary": (lambda: stylize(content, [style], base)),
            "trained": (lambda: stylize(content, None, base.replace(model=str(net), builtin_style="0")))}  # fmt: skip
    times = {name: [] for name in runs}
    for _ in range(2):
        for run in runs.values():
            run()
    for _ in range(rounds):
        for name, run in runs.items():
            began = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - began)
    return {name: round(float(np.median(t)), 4) for name, t in times.items()}


if __name__ == "__main__":
    main()
