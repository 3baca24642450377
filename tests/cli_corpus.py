"""A corpus of bad command lines for `jaxstyle`, built from files the tests generate.

`build_files(folder)` writes every input the cases refer to (valid small images, broken
images, bad weight files, ...) and returns a dict name -> path. Each `Case` holds an argument
list with ``{name}`` placeholders for those paths, the exit code the CLI must give, and words
its one-line error message must contain.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jaxstyle.errors import (
    ImageError,
    InputNotFoundError,
    MaskError,
    OutputError,
    UsageError,
    WeightsError,
)
from jaxstyle.weights import FORMAT_NAME, FORMAT_VERSION, default_weights_path

USAGE = UsageError.exit_code  # 2
NOT_FOUND = InputNotFoundError.exit_code  # 3
IMAGE = ImageError.exit_code  # 4
WEIGHTS = WeightsError.exit_code  # 5
OUTPUT = OutputError.exit_code  # 6
MASK = MaskError.exit_code  # 8


def _noise_image(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def gigantic_png(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming width x height RGB pixels, with almost no data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def build_files(folder: Path) -> dict[str, Path]:
    """Write every input file the corpus uses into ``folder``; return name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        path = folder / name
        path.write_bytes(data)
        files[name.replace(".", "_")] = path

    put("content.png", _png_bytes(_noise_image(40, 32, 0)))
    put("style.png", _png_bytes(_noise_image(36, 36, 1)))
    put("style2.png", _png_bytes(_noise_image(36, 36, 2)))
    put("empty.png", b"")
    put("garbage.png", np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    big_png = _png_bytes(_noise_image(64, 64, 4))
    put("truncated.png", big_png[: len(big_png) // 2])
    big_jpeg = _jpeg_bytes(_noise_image(64, 64, 5))
    put("truncated.jpg", big_jpeg[: len(big_jpeg) // 2])
    put("text.jpg", b"This is a shopping list, not a photo.\nmilk\neggs\n")
    put("one.png", _png_bytes(_noise_image(1, 1, 6)))
    put("tiny.png", _png_bytes(_noise_image(8, 8, 7)))
    put("gigantic.png", gigantic_png(100_000, 100_000))
    put("existing.png", _png_bytes(_noise_image(20, 20, 8)))
    left = np.zeros((32, 40), np.uint8)
    left[:, :20] = 255
    put("mask.png", _png_bytes(Image.fromarray(left)))
    put("black_mask.png", _png_bytes(Image.new("L", (40, 32), 0)))
    put("notes.txt", b"a regular file, used where a folder is expected\n")
    # Weight files that are not weights.
    put("garbage.safetensors", np.random.default_rng(9).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("empty.safetensors", b"")
    put("image.safetensors", _png_bytes(_noise_image(16, 16, 10)))
    put("hdf5junk.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 600)
    put(
        "matjunk.mat",
        b"MATLAB 5.0 MAT-file, Platform: GLNXA64".ljust(116, b" ") + b"\x00" * 12 + b"\x00\x01IM" + b"\x00" * 64,
    )
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("archive/data.pkl", b"not a pickle at all")
    put("zipjunk.bin", zipped.getvalue())
    from safetensors.numpy import save as save_safetensors

    put("wrong.safetensors", save_safetensors({"foo/kernel": np.zeros((3, 3), np.float32)}))
    put(
        "partial.safetensors",
        save_safetensors(
            {"block1_conv1/kernel": np.zeros((3, 3, 3, 64), np.float32), "block1_conv1/bias": np.zeros(64, np.float32)},
            metadata={"format": FORMAT_NAME, "format_version": FORMAT_VERSION},
        ),
    )
    with open(default_weights_path(), "rb") as embedded:
        put("truncated.safetensors", embedded.read(65536))
    _put_videos(put)
    (folder / "folder").mkdir()
    files["folder"] = folder / "folder"
    (folder / "folder.png").mkdir()
    files["folder_png"] = folder / "folder.png"
    files["missing"] = folder / "no_such_photo.png"
    files["out"] = folder / "out.png"
    files["tmp"] = folder
    return files


def _put_videos(put) -> None:
    """A good 4-frame clip and the bad videos of the `video` cases."""
    import av

    frames = [_noise_image(64, 48, 20 + i) for i in range(4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="PNG", save_all=True, append_images=frames[1:], duration=50)
    put("clip.png", buffer.getvalue())
    put("text.mp4", b"This is a shopping list, not a video.\n" * 8)
    with tempfile.TemporaryDirectory() as scratch:  # the MP4 muxer wants a real file
        zero, clip = Path(scratch, "zero.mp4"), Path(scratch, "clip.mp4")
        with av.open(str(zero), "w") as out:  # a header, a video stream, no frame
            stream = out.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
            out.start_encoding()
        with av.open(str(clip), "w", options={"movflags": "faststart"}) as out:
            stream = out.add_stream("libx264", rate=24)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_image(frame)))
            out.mux(stream.encode(None))
        put("zero.mp4", zero.read_bytes())
        put("unknown_codec.mp4", clip.read_bytes().replace(b"avc1", b"zzzz"))  # a codec FFmpeg does not know
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:2], duration=50)
    huge = bytearray(gif.getvalue())
    huge[6:10] = struct.pack("<HH", 65535, 65535)  # the logical screen: 4.3 gigapixels a frame
    put("huge.gif", bytes(huge))


@dataclass(frozen=True)
class Case:
    """One bad command line: args (with {placeholders}), exit code, words the message contains."""

    id: str
    args: tuple[str, ...]
    code: int
    mentions: tuple[str, ...]
    click_usage: bool = False  # a click parsing error: CliRunner prints click's usage text
    bug: str | None = None  # a known CLI bug: the case is expected to fail until it is fixed

    def argv(self, files: dict[str, Path]) -> list[str]:
        names = {key: str(value) for key, value in files.items()}
        return [arg.format(**names) for arg in self.args]


def _stylize(
    *extra: str, content: str = "{content_png}", styles: tuple[str, ...] = ("{style_png}",), out: str = "{out}"
):
    return ("stylize", content, *styles, "-o", out, *extra)


def _video(*extra: str, clip: str = "{clip_png}", out: str = "{tmp}/video.mp4"):
    return ("video", clip, "{style_png}", "-o", out, *extra)


FAST = ("--max-size", "32", "--iterations", "2")  # for cases that would otherwise start optimising

KNN_PARAMS_BUG = (
    "colour options are only checked in KNNColorTransfer.fit(), inside the progress bar: a 'colour ... learning' "
    "line is printed before the error, and the message names the Python parameter (patch_size) not the option"
)

CASES: list[Case] = [
    # --- inputs that are missing or not images -----------------------------------------------
    Case("missing-content", _stylize(content="{missing}"), NOT_FOUND, ("no_such_photo.png", "does not exist")),
    Case("missing-style", _stylize(styles=("{missing}",)), NOT_FOUND, ("no_such_photo.png", "does not exist")),
    Case("directory-content", _stylize(content="{folder}"), NOT_FOUND, ("folder", "directory")),
    Case("empty-content", _stylize(content="{empty_png}"), IMAGE, ("empty.png", "empty")),
    Case("garbage-content", _stylize(content="{garbage_png}"), IMAGE, ("garbage.png", "not a recognised image")),
    Case("truncated-png", _stylize(content="{truncated_png}"), IMAGE, ("truncated.png", "truncated")),
    Case("truncated-jpeg-style", _stylize(styles=("{truncated_jpg}",)), IMAGE, ("truncated.jpg", "truncated")),
    Case("text-as-jpeg", _stylize(content="{text_jpg}"), IMAGE, ("text.jpg", "not a recognised image")),
    Case("one-pixel", _stylize(content="{one_png}"), IMAGE, ("one.png", "1x1")),
    Case("eight-pixels-style", _stylize(styles=("{tiny_png}",)), IMAGE, ("tiny.png", "8x8", "16 px")),
    Case("gigantic-header", _stylize(content="{gigantic_png}"), IMAGE, ("gigantic.png", "10000 Mpx", "GiB")),
    Case(
        "init-image-missing",
        _stylize("--init", "image", "--init-image", "{missing}"),
        NOT_FOUND,
        ("no_such_photo.png",),
    ),
    Case(
        "missing-content-new-folder",
        _stylize(content="{missing}", out="{tmp}/new/folder/out.png"),
        NOT_FOUND,
        ("no_such_photo.png",),
    ),
    # --- outputs that may not or cannot be written --------------------------------------------
    Case("output-unsupported-suffix", _stylize(out="{tmp}/out.xyz"), USAGE, ("out.xyz", ".xyz", ".png")),
    Case("output-no-suffix", _stylize(out="{tmp}/result"), USAGE, ("result", "no file extension")),
    Case("output-is-content", _stylize(out="{content_png}"), OUTPUT, ("content.png", "input")),
    Case("output-is-style-overwrite", _stylize("--overwrite", out="{style_png}"), OUTPUT, ("style.png", "input")),
    Case("output-exists", _stylize(out="{existing_png}"), OUTPUT, ("existing.png", "--overwrite")),
    Case("output-is-directory", _stylize(out="{folder}"), USAGE, ("folder",)),
    Case("output-is-directory-with-suffix", _stylize(out="{folder_png}"), OUTPUT, ("folder.png", "directory")),
    Case("history-exists", _stylize("--history", "{existing_png}"), OUTPUT, ("existing.png", "--overwrite")),
    Case("history-folder-is-a-file", _stylize("--history", "{notes_txt}/h.json"), OUTPUT, ("notes.txt", "h.json")),
    Case(
        "history-is-the-output",
        _stylize("--history", "{tmp}/same.png", *FAST, out="{tmp}/same.png"),
        USAGE,
        ("same.png",),
    ),
    Case("output-folder-is-a-file", _stylize(out="{notes_txt}/out.png"), OUTPUT, ("notes.txt",)),
    # --- numeric options ----------------------------------------------------------------------
    Case("max-size-0", _stylize("--max-size", "0"), USAGE, ("max size", "0")),
    Case("max-size-negative", _stylize("--max-size", "-5"), USAGE, ("max size", "-5")),
    Case("memory-budget-0", _stylize("--memory-budget", "0"), USAGE, ("memory budget", "0")),
    Case("memory-budget-nan", _stylize("--memory-budget", "nan"), USAGE, ("memory budget", "nan")),
    Case("memory-budget-too-small", _stylize("--memory-budget", "0.5"), USAGE, ("memory budget", "0.5 GiB")),
    Case("tile-size-10", _stylize("--tile-size", "10"), USAGE, ("tile size", "10")),
    Case("stop-tolerance-negative", _stylize("--stop-tolerance", "-0.1"), USAGE, ("stop tolerance", "-0.1")),
    Case("stop-tolerance-1", _stylize("--stop-tolerance", "1"), USAGE, ("stop tolerance", "1.0")),
    Case("stop-window-0", _stylize("--set", "stop_window=0"), USAGE, ("stop window", "0")),
    Case("loss-units-unknown", _stylize("--set", "loss_units=pixels"), USAGE, ("loss units", "pixels")),
    Case("iterations-0", _stylize("--iterations", "0"), USAGE, ("iterations", "0")),
    Case("style-weight-negative", _stylize("--style-weight", "-1"), USAGE, ("style weight", "-1")),
    Case("style-weight-nan", _stylize("--style-weight", "nan"), USAGE, ("style weight", "nan")),
    Case("content-weight-inf", _stylize("--content-weight", "inf"), USAGE, ("content weight", "inf")),
    Case("tv-weight-minus-inf", _stylize("--tv-weight", "-inf"), USAGE, ("tv weight", "-inf")),
    Case("lr-0", _stylize("--lr", "0"), USAGE, ("learning rate",)),
    Case("lr-nan", _stylize("--lr", "nan"), USAGE, ("learning rate", "nan")),
    Case("style-scale-0", _stylize("--style-scale", "0"), USAGE, ("style scale",)),
    Case("start-size-8", _stylize("--start-size", "8"), USAGE, ("multiscale start", "8")),
    Case(
        "coarse-iterations-0",
        _stylize("--start-size", "16", "--coarse-iterations", "0"),
        USAGE,
        ("coarse iterations", "0"),
    ),
    Case("save-every-0", _stylize("--save-every", "0"), USAGE, ("--save-every", "0")),
    Case("quality-0", _stylize("--quality", "0"), USAGE, ("--quality", "0"), click_usage=True),
    Case("quality-101", _stylize("--quality", "101"), USAGE, ("--quality", "101"), click_usage=True),
    Case("max-size-not-a-number", _stylize("--max-size", "big"), USAGE, ("--max-size", "integer"), click_usage=True),
    Case(
        "style-weight-not-a-number",
        _stylize("--style-weight", "lots"),
        USAGE,
        ("--style-weight", "number"),
        click_usage=True,
    ),
    Case("iterations-float", _stylize("--iterations", "2.5"), USAGE, ("--iterations",), click_usage=True),
    Case("seed-negative", _stylize("--seed", "-1", "--init", "noise", *FAST), USAGE, ("seed", "-1")),
    # --- choices ------------------------------------------------------------------------------
    Case("optimizer-sgd", _stylize("--optimizer", "sgd"), USAGE, ("optimizer", "sgd", "lbfgs")),
    Case("init-magic", _stylize("--init", "magic"), USAGE, ("init", "magic")),
    Case("preserve-color-rainbow", _stylize("--preserve-color", "rainbow"), USAGE, ("rainbow",)),
    Case("pooling-median", _stylize("--pooling", "median"), USAGE, ("pooling", "median")),
    Case("style-statistic-bogus", _stylize("--style-statistic", "bogus"), USAGE, ("style statistic", "bogus")),
    Case("preset-nonsense", _stylize("--preset", "nonsense"), USAGE, ("preset", "nonsense", "neural-style")),
    Case("init-image-without-file", _stylize("--init", "image"), USAGE, ("--init-image",)),
    # --- lists --------------------------------------------------------------------------------
    Case("style-weights-count", _stylize("--style-weights", "1,2"), USAGE, ("1 style images", "2 style weights")),
    Case("style-weights-negative", _stylize("--style-weights", "-1"), USAGE, ("--style-weights", "-1")),
    Case(
        "style-weights-all-zero",
        _stylize("--style-weights", "0,0", *FAST, styles=("{style_png}", "{style2_png}")),
        USAGE,
        ("style weights",),
    ),
    Case("style-layer-weights-text", _stylize("--style-layer-weights", "a,b"), USAGE, ("--style-layer-weights", "a,b")),
    Case(
        "style-layer-weights-count",
        _stylize("--style-layer-weights", "1,2"),
        USAGE,
        ("5 style layers", "2 layer weights"),
    ),
    Case("style-layer-weights-empty", _stylize("--style-layer-weights", ","), USAGE, ("--style-layer-weights",)),
    # --- style masks and regions --------------------------------------------------------------
    Case(
        "mask-count",
        _stylize("--style-mask", "{mask_png}", "--style-mask", "{mask_png}"),
        MASK,
        ("1 style", "2 style masks"),
    ),
    Case("mask-missing", _stylize("--style-mask", "{missing}"), MASK, ("no_such_photo.png", "does not exist")),
    Case("mask-empty", _stylize("--style-mask", "{empty_png}"), MASK, ("empty.png", "empty")),
    Case("mask-not-an-image", _stylize("--style-mask", "{text_jpg}"), MASK, ("text.jpg",)),
    Case("mask-bomb", _stylize("--style-mask", "{gigantic_png}"), MASK, ("gigantic.png", "limit")),
    Case("mask-all-black", _stylize("--style-mask", "{black_mask_png}"), MASK, ("black_mask.png", "all black")),
    Case("mask-aspect", _stylize("--style-mask", "{style_png}"), MASK, ("36x36", "40x32", "--mask-fit stretch")),
    Case(
        "mask-with-style-weights",
        _stylize("--style-mask", "{mask_png}", "--style-weights", "1"),
        USAGE,
        ("--style-weights", "--style-mask"),
    ),
    Case(
        "region-count",
        _stylize("--style-region", "{style_png}", "--style-region", "{style_png}"),
        MASK,
        ("2 style regions",),
    ),
    Case("region-aspect", _stylize("--style-region", "{mask_png}"), MASK, ("mask.png", "40x32", "36x36")),
    Case("mask-feather-negative", _stylize("--mask-feather", "-1"), USAGE, ("mask feather", "-1")),
    Case("mask-fit-unknown", _stylize("--mask-fit", "crop"), USAGE, ("mask fit", "crop")),
    # --- command-line syntax ------------------------------------------------------------------
    Case("unknown-option", _stylize("--frobnicate"), USAGE, ("--frobnicate",), click_usage=True),
    Case("missing-output-option", ("stylize", "{content_png}", "{style_png}"), USAGE, ("--output",), click_usage=True),
    Case("missing-style-argument", ("stylize", "{content_png}", "-o", "{out}"), USAGE, ("styles",), click_usage=True),
    Case("unknown-command", ("stylise", "{content_png}"), USAGE, ("stylise",), click_usage=True),
    # --- weight files -------------------------------------------------------------------------
    Case("weights-garbage", _stylize("--weights", "{garbage_safetensors}", *FAST), WEIGHTS, ("garbage.safetensors",)),
    Case("weights-empty", _stylize("--weights", "{empty_safetensors}", *FAST), WEIGHTS, ("empty.safetensors", "empty")),
    Case("weights-is-a-png", _stylize("--weights", "{image_safetensors}", *FAST), WEIGHTS, ("image.safetensors",)),
    Case(
        "weights-missing", _stylize("--weights", "{missing}", *FAST), NOT_FOUND, ("no_such_photo.png", "does not exist")
    ),
    Case(
        "weights-not-jaxstyle",
        _stylize("--weights", "{wrong_safetensors}", *FAST),
        WEIGHTS,
        ("wrong.safetensors", "convert"),
    ),
    Case(
        "weights-missing-layers",
        _stylize("--weights", "{partial_safetensors}", *FAST),
        WEIGHTS,
        ("partial.safetensors", "missing"),
    ),
    Case(
        "weights-truncated",
        _stylize("--weights", "{truncated_safetensors}", *FAST),
        WEIGHTS,
        ("truncated.safetensors",),
    ),
    Case("weights-directory", _stylize("--weights", "{folder}", *FAST), NOT_FOUND, ("folder", "directory")),
    Case("weights-hdf5-junk", ("weights", "info", "{hdf5junk_h5}"), WEIGHTS, ("hdf5junk.h5",)),
    Case("weights-mat-junk", ("weights", "info", "{matjunk_mat}"), WEIGHTS, ("matjunk.mat",)),
    Case("weights-zip-junk", ("weights", "info", "{zipjunk_bin}"), WEIGHTS, ("zipjunk.bin",)),
    Case(
        "weights-info-garbage",
        ("weights", "info", "{garbage_safetensors}"),
        WEIGHTS,
        ("garbage.safetensors", "unrecognised"),
    ),
    Case("weights-info-directory", ("weights", "info", "{folder}"), NOT_FOUND, ("folder", "directory")),
    Case(
        "weights-convert-bad-suffix",
        ("weights", "convert", "{wrong_safetensors}", "-o", "{tmp}/vgg.bin"),
        OUTPUT,
        ("vgg.bin", ".safetensors"),
    ),
    Case(
        "weights-convert-missing",
        ("weights", "convert", "{missing}", "-o", "{tmp}/vgg.safetensors"),
        NOT_FOUND,
        ("no_such_photo.png", "does not exist"),
    ),
    Case(
        "weights-convert-garbage",
        ("weights", "convert", "{garbage_safetensors}", "-o", "{tmp}/vgg.safetensors"),
        WEIGHTS,
        ("garbage.safetensors",),
    ),
    Case(
        "weights-convert-onto-itself",
        ("weights", "convert", "{wrong_safetensors}", "-o", "{wrong_safetensors}", "--overwrite"),
        WEIGHTS,
        ("wrong.safetensors",),
    ),
    # --- colour transfer ----------------------------------------------------------------------
    Case(
        "color-patch-size-2",
        ("color", "{content_png}", "{style_png}", "-o", "{out}", "--patch-size", "2"),
        USAGE,
        ("patch", "2"),
    ),
    Case(
        "color-patch-size-0",
        ("color", "{content_png}", "{style_png}", "-o", "{out}", "--patch-size", "0"),
        USAGE,
        ("patch", "0"),
    ),
    Case(
        "color-neighbors-0",
        ("color", "{content_png}", "{style_png}", "-o", "{out}", "--neighbors", "0"),
        USAGE,
        ("neighbors", "0"),
    ),
    Case(
        "color-max-train-0",
        ("color", "{content_png}", "{style_png}", "-o", "{out}", "--max-train", "0"),
        USAGE,
        ("max_train", "0"),
    ),
    Case(
        "color-missing-style", ("color", "{content_png}", "{missing}", "-o", "{out}"), NOT_FOUND, ("no_such_photo.png",)
    ),
    Case("color-garbage-content", ("color", "{garbage_png}", "{style_png}", "-o", "{out}"), IMAGE, ("garbage.png",)),
    Case(
        "color-output-exists",
        ("color", "{content_png}", "{style_png}", "-o", "{existing_png}"),
        OUTPUT,
        ("existing.png", "--overwrite"),
    ),
    Case(
        "color-quality-0",
        ("color", "{content_png}", "{style_png}", "-o", "{out}", "--quality", "0"),
        USAGE,
        ("--quality",),
        click_usage=True,
    ),
    # --- bench --------------------------------------------------------------------------------
    Case("bench-size-8", ("bench", "--size", "8"), USAGE, ("'8'", "16")),
    Case("bench-size-text", ("bench", "--size", "huge"), USAGE, ("huge",)),
    Case("bench-optimizer-sgd", ("bench", "--optimizer", "sgd"), USAGE, ("--optimizer", "sgd")),
    Case("bench-precision-fp8", ("bench", "--precision", "fp8"), USAGE, ("--precision", "fp8")),
    Case("bench-conv-fft", ("bench", "--conv", "fft"), USAGE, ("--conv", "fft")),
    Case("bench-batch-0", ("bench", "--batch", "0"), USAGE, ("--batch",)),
    Case("bench-batch-text", ("bench", "--batch", "two"), USAGE, ("--batch", "two")),
    Case("bench-steps-0", ("bench", "--steps", "0"), USAGE, ("--steps", "0")),
    Case("bench-compare-jax", ("bench", "--compare", "jax"), USAGE, ("--compare", "jax")),
    Case(
        "bench-compare-lbfgs-only",
        ("bench", "--optimizer", "lbfgs", "--compare", "torch"),
        USAGE,
        ("--compare", "adam"),
    ),
    Case(
        "bench-weights-garbage",
        ("bench", "--size", "16", "--steps", "1", "--weights", "{garbage_png}"),
        WEIGHTS,
        ("garbage.png",),
    ),
    # --- video --------------------------------------------------------------------------------
    Case("video-missing", _video(clip="{missing}"), NOT_FOUND, ("no_such_photo.png", "does not exist")),
    Case("video-not-a-video", _video(clip="{text_mp4}"), IMAGE, ("text.mp4", "not a video")),
    Case("video-zero-frames", _video(clip="{zero_mp4}"), IMAGE, ("zero.mp4", "no frames")),
    Case("video-still-image", _video(clip="{content_png}"), IMAGE, ("content.png", "still image")),
    Case("video-unsupported-codec", _video(clip="{unknown_codec_mp4}"), IMAGE, ("unknown_codec.mp4", "codec")),
    Case("video-beyond-memory", _video(clip="{huge_gif}"), IMAGE, ("huge.gif", "too large")),
    Case("video-output-is-input", _video("--overwrite", out="{clip_png}"), OUTPUT, ("clip.png", "input")),
    Case("video-output-is-style", _video(out="{style_png}"), OUTPUT, ("style.png", "input")),
    Case("video-output-exists", _video(out="{existing_png}"), OUTPUT, ("existing.png", "--overwrite")),
    Case("video-output-avi", _video(out="{tmp}/v.avi"), USAGE, ("v.avi", ".avi", ".mp4")),
    Case("video-temporal-weight-2", _video("--temporal-weight", "2"), USAGE, ("temporal weight", "2")),
    Case("video-temporal-weight-nan", _video("--temporal-weight", "nan"), USAGE, ("temporal weight", "nan")),
    Case("video-batch-size-0", _video("--batch-size", "0"), USAGE, ("--batch-size", "0"), click_usage=True),
    Case("video-method-magic", _video("--method", "magic"), USAGE, ("method", "magic")),
    # --- demo ---------------------------------------------------------------------------------
    Case("demo-max-size-0", ("demo", "-o", "{out}", "--max-size", "0"), USAGE, ("max size", "0")),
    Case("demo-output-exists", ("demo", "-o", "{existing_png}"), OUTPUT, ("existing.png", "--overwrite")),
]

#: The subset that also runs in a real subprocess (each costs a Python + JAX start-up).
SUBPROCESS_CASES = (
    "missing-content",
    "truncated-png",
    "one-pixel",
    "gigantic-header",
    "output-exists",
    "output-folder-is-a-file",
    "style-weight-nan",
    "mask-all-black",
    "unknown-option",
    "missing-output-option",
    "weights-garbage",
    "video-unsupported-codec",
)


def snapshot(folder: Path) -> dict[str, tuple[str, bytes, int]]:
    """Every entry under ``folder``: kind, bytes (files) and mtime_ns, to prove nothing changed."""
    state: dict[str, tuple[str, bytes, int]] = {}
    for root, dirs, names in os.walk(folder):
        for name in dirs:
            path = Path(root, name)
            state[str(path.relative_to(folder))] = ("dir", b"", 0)
        for name in names:
            path = Path(root, name)
            state[str(path.relative_to(folder))] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
    return state


def describe_changes(before: dict, after: dict) -> list[str]:
    changes = [f"created {name}" for name in sorted(after.keys() - before.keys())]
    changes += [f"removed {name}" for name in sorted(before.keys() - after.keys())]
    changes += [f"modified {name}" for name in sorted(before.keys() & after.keys()) if before[name] != after[name]]
    return changes
