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
from anchorline_gateway.reads import JOB_ID_RE, JobReader

PROVEN_KINDS = ("proof", "anchor")


class NoReceipt(Exception):
    """The job exists but has no receipt (yet); the message says why."""


def build_receipt(
    job: dict[str, Any], *, batch_anchor: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The receipt of a succeeded proof or anchor job, or NoReceipt saying why there is none.
    `batch_anchor`: the anchor of a proof job's batch, from the record of an anchor job in it."""
    try:
        return _receipt(job, batch_anchor)
    except (KeyError, TypeError, AttributeError) as exc:
        # The record is the projection of status events, which anyone who may write the status
        # topic can shape: a record without a field a receipt needs has no receipt.
        missing = exc.args[0] if isinstance(exc, KeyError) and exc.args else type(exc).__name__
        raise NoReceipt(f"the job's record lacks what a receipt needs ({missing})") from exc


def _receipt(job: dict[str, Any], batch_anchor: dict[str, Any] | None) -> dict[str, Any]:
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
    if kind == "anchor":
        anchor = result.get("anchor")
        if not isinstance(anchor, dict):
            raise NoReceipt("the job's record lacks what a receipt needs (its anchor)")
    elif batch_anchor is not None and batch_anchor.get("root") == prove["root"]:
        anchor = batch_anchor
    else:
        anchor = None  # not anchored, or not this job's batch after all
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


def _batch_anchor(reader: JobReader, job: dict[str, Any]) -> dict[str, Any] | None:
    """The confirmed anchor of a proof job's batch, read from the anchor job the prover named;
    only its chain facts, whichever tenant that job is of."""
    result = job.get("result")
    prove = result.get("prove") if isinstance(result, dict) else None
    other = prove.get("anchoredWith") if isinstance(prove, dict) else None
    if job.get("kind") != "proof" or not isinstance(other, str) or not JOB_ID_RE.fullmatch(other):
        return None
    batchmate = reader.get(other)
    if batchmate is None or batchmate.get("state") != "succeeded":
        return None
    anchor = (batchmate.get("result") or {}).get("anchor")
    return anchor if isinstance(anchor, dict) else None


async def get_receipt(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    if not JOB_ID_RE.fullmatch(job_id):
        return JSONResponse({"error": "job id has characters a job id never has"}, status_code=400)
    reader = request.app.state.gateway.reader
    job = await run_in_threadpool(reader.get, job_id)
    if job is None or not visible(request, job):
        return JSONResponse({"error": f"no job {job_id}"}, status_code=404)
    batch_anchor = await run_in_threadpool(_batch_anchor, reader, job)
    try:
        return JSONResponse(build_receipt(job, batch_anchor=batch_anchor))
    except NoReceipt as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
