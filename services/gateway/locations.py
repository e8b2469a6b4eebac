"""Where a job's record is read (the status_url and Location of every answer about a job)."""

from __future__ import annotations

from starlette.requests import Request


def jobs_path(request: Request) -> str:
    """The path of the job route before the job id, found once for each root path: url_for
    walks the routes (a twentieth of a single POST's gateway time, a tenth of a batch's).
    create_app gives the app its `jobs_paths`."""
    known: dict[str, str] = request.app.state.jobs_paths
    root = request.scope.get("root_path", "")
    if root not in known:
        known[root] = str(request.url_for("get_job", job_id="0").path).removesuffix("0")
    return known[root]
