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
        checkpoint_every=args.every, sample_every=args.every,
    )  # fmt: skip
    style_config = StyleConfig().replace(content_weight=args.content_weight)
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
    parser.add_argument("phase", choices=("photos", "train", "judge"))
    parser.add_argument("--photos", default="/tmp/train_photos")
    parser.add_argument("--out", default="/tmp/train_run")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--content-weight", type=float, default=1.0)
    args = parser.parse_args()
    if args.phase == "photos":
        make_photos(Path(args.photos))
    elif args.phase == "train":
        run_training(args)
    else:
        judge_runs(args)


def judge_runs(args) -> None:
    raise NotImplementedError


if __name__ == "__main__":
    main()
