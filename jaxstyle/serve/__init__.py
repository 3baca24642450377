"""`jaxstyle serve`: a local web app over the same library functions as the CLI.

One module per job: `security` (who may talk to the server: Host, Origin, token, size limits,
response headers), `uploads` (decoded images by id), `results` (finished pictures written
atomically to the results folder, served by id), `recipe` (the CLI command that reproduces a
result), `jobs` (the one-at-a-time queue that runs `jaxstyle.stylization.stylize` and streams its
progress), `live` (fast previews and webcam frames on a kept runner, with the video path's
temporal blending), and `app` (`create_app`: routes, handlers and error mapping). The page is
plain HTML/CSS/JS in ``static/``. Nothing here is imported by ``jaxstyle --help``: the command
imports Starlette and JAX when it runs.
"""
