"""Peak resident memory of verifying a large file through the verify handler, against a baseline.

    .venv/bin/python bench/verify_memory.py [--size-mib 2048] [--runs 3] [--dense] [--s3]

Makes a file in a temporary directory (sparse by default; --dense writes pseudo-random bytes),
signs a manifest for it, then runs, in fresh child processes, `--runs` times each:

- baseline: import everything the verifier service imports, build the handler, report ru_maxrss;
- verify:   the same, then verify the file through VerifyHandler.handle (file:// content URI).

With --s3 the file is first uploaded (multipart) to a bucket of an S3Proxy started for the run,
and both children build the verifier's blob store from settings naming that bucket
(ANCHORLINE_BLOB_URL), so that the baseline holds boto3 and its S3 client and the verify child
streams the content from S3 (its sha256: URI).

It prints the medians: the verifier process's peak, which must stay under 64 MiB however large
the file, and its difference from the baseline, what the streaming itself needed. The file is
deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

TARGET_MIB = 64
MIB = 1 << 20


def child(mode: str, request: dict[str, Any]) -> dict[str, float]:
    """Runs in the child process: imports (and, for `verify`, verifies), then reports."""
    from anchorline.events import JobKind, JobRequested, JobStatus, StageState, utcnow
    from anchorline.settings import Settings
    from anchorline.store.blobs import blob_store
    from anchorline_verifier.handler import VerifyHandler
    from anchorline_verifier.main import build  # noqa: F401  (everything the service imports)

    content = Path(request["path"])
    settings = Settings.from_env(request["env"], content_roots=str(content.parent))
    handler = VerifyHandler(blob_store(settings), chunk_size=settings.chunk_size)
    elapsed = 0.0
    if mode == "verify":
        event = JobRequested(
            job_id="bench",
            kind=JobKind.VERIFY,
            content_uri=request["uri"],
            manifest=request["manifest"],
            signature=request["signature"],
            submitted_at=utcnow(),
        )
        started = time.perf_counter()
        (status,) = handler.handle([event], lambda ref, percent: None)
        elapsed = time.perf_counter() - started
        assert isinstance(status, JobStatus) and status.state is StageState.SUCCEEDED, status
    return {"peak_mib": peak_rss_kib() / 1024, "seconds": elapsed}


def peak_rss_kib() -> int:
    """This process's own peak resident set. Not ru_maxrss: on Linux a child's starts at what
    its parent held when it forked (the --s3 parent holds boto3 and an upload's buffers)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB, where /proc has no VmHWM


def make_file(path: Path, size: int, *, dense: bool) -> None:
    with path.open("wb") as handle:
        if not dense:
            handle.truncate(size)
            return
        block = os.urandom(MIB)
        for offset in range(0, size, MIB):
            handle.write(block[: min(MIB, size - offset)])


def in_s3(path: Path, tmp: Path, stack: ExitStack) -> dict[str, Any]:
    """Start S3Proxy, upload the file to a bucket; the settings and URI that read it there."""
    from anchorline.infra.ports import free_port
    from anchorline.infra.s3proxy import S3Proxy
    from anchorline.settings import Settings
    from anchorline.store.blobs import blob_store, s3_access
    from anchorline.store.s3blobs import ensure_bucket

    server = S3Proxy(
        state_dir=tmp / "s3proxy",
        port=free_port(),
        access_key="bench",
        secret_key=os.urandom(16).hex(),
    )
    stack.enter_context(server)
    settings = Settings(
        blob_url="s3://bench/blobs",
        s3_endpoint_url=server.endpoint,
        s3_access_key_id=server.access_key,
        s3_secret_access_key=server.secret_key,
    )
    ensure_bucket(s3_access(settings).client(), "bench")
    started = time.perf_counter()
    with path.open("rb") as source:
        uri, size = blob_store(settings).put_file(source)
    seconds = time.perf_counter() - started
    print(f"uploaded {size / MIB:.0f} MiB to S3Proxy in {seconds:.1f} s", flush=True)
    env = {key: value for key, value in settings.as_env().items() if "S3" in key or "BLOB" in key}
    return {"uri": uri, "env": env}


def run_child(mode: str, request: dict[str, Any]) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", mode]
    result = subprocess.run(
        command, input=json.dumps(request), capture_output=True, text=True, check=True
    )
    measured: dict[str, float] = json.loads(result.stdout)
    return measured


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dense", action="store_true", help="write real bytes, not a sparse file")
    parser.add_argument("--s3", action="store_true", help="read the content from S3 (S3Proxy)")
    parser.add_argument("--child", choices=("baseline", "verify"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, json.loads(sys.stdin.read()))))
        return 0

    from eth_account import Account

    from anchorline.proof.manifest import canonical_bytes, describe_file, sign_eip191

    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="anchorline-bench-") as tmp:
        path = Path(tmp) / "content.bin"
        make_file(path, size, dense=args.dense)
        creator = Account.create()
        document = describe_file(path, creator.address)
        request = {
            "path": str(path),
            "uri": path.as_uri(),
            "env": {"ANCHORLINE_BLOB_DIR": str(Path(tmp) / "blobs")},
            "manifest": canonical_bytes(document).decode(),
            "signature": sign_eip191(document, creator.key.hex()),
        }
        with ExitStack() as stack:
            if args.s3:
                request |= in_s3(path, Path(tmp), stack)
            baseline = [run_child("baseline", request) for _ in range(args.runs)]
            verify = [run_child("verify", request) for _ in range(args.runs)]
    base_mib = statistics.median(run["peak_mib"] for run in baseline)
    verify_mib = statistics.median(run["peak_mib"] for run in verify)
    seconds = statistics.median(run["seconds"] for run in verify)
    extra = verify_mib - base_mib
    kind = "dense" if args.dense else "sparse"
    source = "from S3 (S3Proxy)" if args.s3 else "from the local disk"
    print(
        f"verify a {args.size_mib} MiB {kind} file {source} through VerifyHandler,"
        f" {args.runs} runs each"
    )
    print(f"baseline (imports + handler): peak RSS {base_mib:7.1f} MiB (median)")
    print(f"verify:                       peak RSS {verify_mib:7.1f} MiB (median)")
    verdict = "PASS" if verify_mib < TARGET_MIB else "FAIL"
    print(f"verify - baseline:            {extra:7.1f} MiB  (what the streaming itself needs)")
    target = f"target < {TARGET_MIB} MiB: {verdict}"
    print(f"verifier process peak:        {verify_mib:7.1f} MiB  ({target})")
    print(f"time to verify:               {seconds:7.2f} s    ({size / MIB / seconds:.0f} MiB/s)")
    return 0 if verify_mib < TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
