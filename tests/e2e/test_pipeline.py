"""The whole system through HTTP and through Kafka, checked against the chain itself."""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer
from eth_account import Account
from system_under_test import System, verify_receipt
from web3 import Web3

from anchorline.events import JobKind, JobRequested, new_id, utcnow
from anchorline.infra.anvil import DEV_PRIVATE_KEYS
from anchorline.proof.manifest import sign, sign_eip191
from anchorline.proof.merkle import ProofStep, leaf_hash, root_from_path
from anchorline.proof.registry import load_artifact
from anchorline.store.blobstore import FileBlobStore
from anchorline.stream import codec

TERMINAL = {"succeeded", "failed", "dead"}


def manifest_for(content: bytes, creator: str) -> dict[str, Any]:
    return {
        "content_hash": "0x" + hashlib.sha256(content).hexdigest(),
        "creator": creator,
        "created_at": "2026-11-23T10:00:00Z",
        "metadata": {"title": "e2e"},
    }


def submit(
    system: System,
    kind: str,
    content: bytes,
    document: dict[str, Any],
    key: str,
    *,
    scheme: str = "eip191",
) -> str:
    response = httpx.post(
        f"{system.base_url}/v1/jobs",
        data={
            "kind": kind,
            "manifest": json.dumps(document),
            "signature": sign(document, key, scheme=scheme),
            "signature_scheme": scheme,
        },
        files={"content": ("content.bin", content)},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status_url"] == f"/v1/jobs/{body['job_id']}"
    return str(body["job_id"])


def wait_terminal(system: System, job_ids: list[str], timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    jobs: dict[str, Any] = {}
    while time.monotonic() < deadline:
        for job_id in job_ids:
            response = httpx.get(f"{system.base_url}/v1/jobs/{job_id}", timeout=10)
            if response.status_code == 200:
                jobs[job_id] = response.json()
        if len(jobs) == len(job_ids) and all(job["state"] in TERMINAL for job in jobs.values()):
            return jobs
        time.sleep(0.5)
    states = {job_id: job.get("state") for job_id, job in jobs.items()}
    raise AssertionError(f"jobs not terminal in time: {states}\n" + "".join(system.output[-40:]))


def check_inclusion(prove: dict[str, Any]) -> None:
    steps = [
        ProofStep(bytes.fromhex(step["hash"][2:]), step["position"] == "left")
        for step in prove["path"]
    ]
    leaf = leaf_hash(bytes.fromhex(prove["salt"][2:]), bytes.fromhex(prove["commitment"][2:]))
    assert "0x" + leaf.hex() == prove["leaf"]
    assert "0x" + root_from_path(leaf, steps).hex() == prove["root"]


def test_http_jobs_of_every_kind_reach_their_final_state(system: System) -> None:
    creator, impostor = Account.create(), Account.create()
    content = b"anchorline end-to-end content\n" * 10_000
    document = manifest_for(content, creator.address)
    ids = {
        "verify": submit(system, "verify", content, document, creator.key.hex()),
        "proof": submit(system, "proof", content, document, creator.key.hex()),
        "anchor": submit(system, "anchor", content, document, creator.key.hex()),
        "impostor": submit(system, "anchor", content, document, impostor.key.hex()),
    }
    jobs = wait_terminal(system, list(ids.values()))
    file_hash = "0x" + hashlib.sha256(content).hexdigest()

    verify = jobs[ids["verify"]]
    assert (verify["state"], verify["kind"], verify["stage"]) == ("succeeded", "verify", "verify")
    assert verify["result"]["verify"]["fileHash"] == file_hash
    assert verify["result"]["verify"]["recovered"] == creator.address
    assert verify["result"]["verify"]["checks"] == {
        "manifestOk": True,
        "manifestHashOk": True,
        "creatorOk": True,
    }
    assert verify["created_at"] <= verify["started_at"] <= verify["finished_at"]
    # `running` shows only if the verifier had the job for RUNNING_STATUS_AFTER_S (a busy machine).
    states = [e["state"] for e in verify["history"]]
    assert states in (["queued", "succeeded"], ["queued", "running", "succeeded"])

    proof = jobs[ids["proof"]]
    assert (proof["state"], proof["stage"]) == ("succeeded", "prove")
    check_inclusion(proof["result"]["prove"])

    anchor = jobs[ids["anchor"]]
    assert (anchor["state"], anchor["stage"]) == ("succeeded", "anchor")
    check_inclusion(anchor["result"]["prove"])
    receipt = anchor["result"]["anchor"]
    assert receipt["root"] == anchor["result"]["prove"]["root"]
    check_on_chain(system, receipt)

    impostor_job = jobs[ids["impostor"]]
    assert (impostor_job["state"], impostor_job["stage"]) == ("failed", "verify")
    checks = impostor_job["result"]["verify"]["checks"]
    assert checks == {"manifestOk": True, "manifestHashOk": True, "creatorOk": False}
    assert impostor_job["result"]["verify"]["recovered"] == impostor.address
    assert "prove" not in impostor_job["result"]

    listed = httpx.get(f"{system.base_url}/v1/jobs", params={"state": "failed"}).json()["jobs"]
    assert ids["impostor"] in {job["job_id"] for job in listed}
    assert ids["anchor"] not in {job["job_id"] for job in listed}


def check_on_chain(system: System, receipt: dict[str, Any]) -> None:
    """Read the root from the chain itself, not from anchorline."""
    w3 = Web3(Web3.HTTPProvider(system.settings.rpc_url))
    registry = w3.eth.contract(address=system.registry_address, abi=load_artifact().abi)
    root = bytes.fromhex(receipt["root"][2:])
    assert registry.functions.anchoredAt(root).call() == receipt["blockNumber"]
    chain_receipt = w3.eth.get_transaction_receipt(receipt["txHash"])
    assert chain_receipt["status"] == 1
    assert chain_receipt["blockNumber"] == receipt["blockNumber"]
    events = registry.events.Anchored().process_receipt(chain_receipt)
    assert [bytes(event["args"]["root"]) for event in events] == [root]
    assert receipt["chainId"] == w3.eth.chain_id


def test_job_published_straight_to_kafka_completes(system: System) -> None:
    creator = Account.create()
    content = b"published by another system"
    uri, _ = FileBlobStore(system.settings.blobs).put_file(io.BytesIO(content))
    document = manifest_for(content, creator.address)
    job = JobRequested(
        job_id=new_id(),
        kind=JobKind.ANCHOR,
        content_uri=uri,
        manifest=json.dumps(document),
        signature=sign_eip191(document, creator.key.hex()),
        submitted_at=utcnow(),
    )
    producer = Producer({"bootstrap.servers": system.settings.kafka_bootstrap, "acks": "all"})
    topic = system.settings.topics.jobs_requested
    producer.produce(topic, key=b"garbage", value=b"\xc3\x01 definitely not a JobRequested")
    producer.produce(topic, key=job.job_id.encode(), value=codec.encode(job))
    assert producer.flush(30) == 0

    record = wait_terminal(system, [job.job_id])[job.job_id]

    assert record["state"] == "succeeded"
    assert record["result"]["verify"]["recovered"] == creator.address
    check_on_chain(system, record["result"]["anchor"])
    letters = dead_letters(system, system.settings.topics.dead_letter(topic), key=b"garbage")
    assert b"garbage" in {message.key() for message in letters}


def dead_letters(system: System, topic: str, *, key: bytes) -> list[Any]:
    """The topic's letters, read until one keyed `key` (other tests of the session's system
    dead-letter records of their own there too) or for 30 s."""
    consumer = Consumer(
        {
            "bootstrap.servers": system.settings.kafka_bootstrap,
            "group.id": f"e2e-{new_id()}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and key not in {m.key() for m in found}:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            found.append(message)
    consumer.close()
    return found


def test_a_receipt_fetched_over_http_checks_against_the_chain(
    system: System, tmp_path: Path
) -> None:
    creator = Account.create()
    content = b"a receipt for this content\n" * 5_000
    document = manifest_for(content, creator.address)
    anchor_id = submit(system, "anchor", content, document, creator.key.hex(), scheme="eip712")
    verify_id = submit(system, "verify", content, document, creator.key.hex())
    jobs = wait_terminal(system, [anchor_id, verify_id])
    assert jobs[anchor_id]["state"] == "succeeded", jobs[anchor_id]
    assert jobs[anchor_id]["result"]["verify"]["status"] == "WARN"  # nobody registered it

    response = httpx.get(f"{system.base_url}/v1/jobs/{anchor_id}/receipt", timeout=10)
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["manifest"]["scheme"] == "eip712"
    assert receipt["attestation"]["typedData"]["domain"]["chainId"] == receipt["anchor"]["chainId"]
    assert httpx.get(f"{system.base_url}/v1/jobs/{verify_id}/receipt").status_code == 409
    assert httpx.get(f"{system.base_url}/v1/jobs/{new_id()}/receipt").status_code == 404

    content_file, receipt_file = tmp_path / "content.bin", tmp_path / "receipt.json"
    content_file.write_bytes(content)
    receipt_file.write_text(json.dumps(receipt))
    trust_url = f"{system.base_url}/.well-known/anchorline-trust.json"
    trust = httpx.get(trust_url, timeout=10).json()
    prover = Account.from_key(DEV_PRIVATE_KEYS[1]).address  # anchorline up's prover key
    assert [p["address"] for p in trust["provers"]] == [prover]
    assert trust["registry"]["address"] == receipt["anchor"]["contract"]
    checked = verify_receipt(
        system, receipt_file, "--content", str(content_file), "--trust", trust_url
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1] == "receipt OK"
    assert "PASS  block" in checked.stdout
    unpinned = verify_receipt(system, receipt_file, "--content", str(content_file))
    assert unpinned.returncode == 3, unpinned.stdout + unpinned.stderr
    assert "only self-consistency was checked" in unpinned.stdout

    receipt["proof"]["salt"] = "0x" + "00" * 32
    receipt_file.write_text(json.dumps(receipt))
    tampered = verify_receipt(system, receipt_file, "--content", str(content_file))
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert tampered.stdout.splitlines()[-1] == "receipt FAILED: leaf"
    as_json = verify_receipt(system, receipt_file, "--content", str(content_file), "--json")
    assert as_json.returncode == 1, as_json.stdout + as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["verdict"] == "invalid"
    assert {"name": "leaf", "outcome": "FAIL"}.items() <= next(
        check for check in document["checks"] if check["name"] == "leaf"
    ).items()
