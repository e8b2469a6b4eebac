"""`GET /v1/jobs/{id}/receipt`: one self-contained document per proven job, from its stage results.

The gateway only reads the jobs table; every fact below was put into the job's `result` by the
stage that established it (verify, prove, anchor). docs/receipts.md specifies the format.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from anchorline.proof.receipt import FORMAT
from anchorline_gateway.auth import visible
from anchorline_gateway.reads import JOB_ID_RE

PROVEN_KINDS = ("proof", "anchor")


class NoReceipt(Exception):
    """The job exists but has no receipt (yet); the message says why."""


def build_receipt(job: dict[str, Any]) -> dict[str, Any]:
    """The receipt of a succeeded proof or anchor job, or NoReceipt saying why there is none."""
    try:
        return _receipt(job)
    except (KeyError, TypeError, AttributeError) as exc:
        # The record is the projection of status events, which anyone who may write the status
        # topic can shape: a record without a field a receipt needs has no receipt.
        missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else type(exc).__name__
        raise NoReceipt(f"the job's record lacks what a receipt needs ({missing})") from exc


def _receipt(job: dict[str, Any]) -> dict[str, Any]:
    kind, state = job["kind"], job["state"]
    if kind not in PROVEN_KINDS:
        raise NoReceipt(f"a {kind} job is not proven; only proof and anchor jobs have receipts")
    if state != "succeeded":
        reason = f": {job['error']}" if job.get("error") else ""
        raise NoReceipt(f"the job is {state} at its {job['stage']} stage{reason}")
    result = job["result"]
    verify, prove = result.get("verify", {}), result.get("prove", {})
    if not isinstance(verify, dict) or not isinstance(prove, dict):
        raise NoReceipt("the job's record lacks what a receipt needs (its stage results)")
    if "manifest" not in verify or "attestation" not in prove:
        raise NoReceipt("the job was processed before anchorline recorded receipts")
    anchor = result.get("anchor") if kind == "anchor" else None
    return {
        "format": FORMAT,
        "jobId": job["job_id"],
        "kind": kind,
        "content": {"hashAlg": "sha256", "sha256": verify["fileHash"], "size": verify["size"]},
        "manifest": {
            "canonical": verify["manifest"],
            "sha256": verify["manifestHash"],
            "signature": verify["signature"],
            "scheme": verify["signatureScheme"],
            "signer": verify["recovered"],
        },
        "verification": {
            "status": verify["status"],
            "checks": verify["checks"],
            "onchain": verify.get("onchain"),
            "warnings": verify.get("warnings", []),
            "finishedAt": job.get("finished_at"),
        },
        "attestation": prove["attestation"],
        "proof": {
            "salt": prove["salt"],
            "commitmentInputs": prove["commitmentInputs"],
            "commitment": prove["commitment"],
            "leaf": prove["leaf"],
            "path": prove["path"],
            "root": prove["root"],
            "batchId": prove["batchId"],
            "batchSize": prove["batchSize"],
            "index": prove["index"],
        },
        "anchor": None if anchor is None else _anchor(anchor),
    }


def _anchor(anchor: dict[str, Any]) -> dict[str, Any]:
    known = ("chainId", "contract", "txHash", "blockNumber", "blockHash", "root", "confirmations")
    section = {name: anchor[name] for name in known}
    # Anything else the chain-writer recorded (finality details, fees) travels along as it is.
    section.update({name: value for name, value in anchor.items() if name not in section})
    return section


async def get_receipt(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if not JOB_ID_RE.fullmatch(job_id):
        return JSONResponse({"error": "job id has characters a job id never has"}, status_code=400)
    reader = request.app.state.gateway.reader
    job = await run_in_threadpool(reader.get, job_id)
    if job is None or not visible(request, job):
        return JSONResponse({"error": f"no job {job_id}"}, status_code=404)
    try:
        return JSONResponse(build_receipt(job))
    except NoReceipt as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
