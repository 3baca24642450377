"""`jaxstyle color`: KNN colour transfer in Lab space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jaxstyle.config import JPEG_QUALITY, ColorConfig

from . import options as opt
from .common import progress_bar, say, user_errors


def color_command(
    content: Annotated[Path, typer.Argument(help="The image to recolour.", show_default=False)],
    styles: Annotated[
        list[Path], typer.Argument(help="One or more images whose colours to learn.", show_default=False)
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Output image.")],
    neighbors: Annotated[int, typer.Option(help="Neighbours per prediction.")] = ColorConfig.n_neighbors,
    patch_size: Annotated[
        int, typer.Option(help="Odd side of the luminance patch used as feature.")
    ] = ColorConfig.patch_size,
    max_train: Annotated[
        int, typer.Option(help="Cap on training patches sampled from the styles.")
    ] = ColorConfig.max_train,
    seed: Annotated[int, typer.Option(help="Seed of the training-patch sampling.")] = ColorConfig.seed,
    quality: opt.Quality = JPEG_QUALITY,
    overwrite: opt.Overwrite = False,
) -> None:
    """Recolour a photo from other images (KNN in Lab space, no texture).

    Each pixel's (a, b) is predicted from its luminance patch by distance-weighted nearest
    neighbours learned on the style images. It transfers colour, not texture.

    Examples:

    \b
      jaxstyle color photo.jpg painting.jpg -o recoloured.png
      jaxstyle color photo.jpg a.jpg b.jpg -o out.jpg --neighbors 8 --patch-size 5
    """
    from jaxstyle.color_knn import KNNColorTransfer, check_params
    from jaxstyle.io.decode import load_image
    from jaxstyle.io.encode import check_image_suffix, save_image
    from jaxstyle.io.files import check_output_path

    with user_errors():
        check_params(n_neighbors=neighbors, patch_size=patch_size, max_train=max_train)
        model = KNNColorTransfer(n_neighbors=neighbors, patch_size=patch_size, max_train=max_train, random_state=seed)
        content_image = load_image(content, min_side=1)
        style_images = [load_image(path, min_side=1).rgb for path in styles]
        check_image_suffix(output)
        output = check_output_path(output, overwrite=overwrite, inputs=[content, *styles])
        with progress_bar() as bar:
            task = bar.add_task("colour", total=None, status="learning")
            model.fit(style_images)

            def on_chunk(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, status="predicting")

            result = model.transform(content_image.rgb, progress=on_chunk)
        save_image(
            output,
            result[..., :3],
            alpha=content_image.alpha,
            overwrite=overwrite,
            inputs=[content, *styles],
            metadata={
                "Software": "jaxstyle color",
                "jaxstyle.color": f"k={neighbors} patch={patch_size} max_train={max_train}",
            },
            jpeg_quality=quality,
        )
        say(f"wrote {output}")
