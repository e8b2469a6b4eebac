"""The finality watch: each anchored root is re-checked until its block is final; a root whose
block a reorg took away after its jobs succeeded is sent to the chain-writer again, its jobs one
generation on, so that they end with a new anchor and a receipt that checks.

The watch reads the anchor requests in a consumer group of its own and commits a request only
once its root is final (or the watch gives up on it): the uncommitted requests are the list of
roots to watch, and it survives a restart.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from web3.exceptions import BlockNotFound, Web3RPCError

from anchorline.errors import Retryable, SerializationError
from anchorline.events import AnchorRequested, Stage, StageState, refs_of, utcnow
from anchorline.settings import Settings
from anchorline.stream import codec, headers
from anchorline.stream.kafka import consumer_config, producer_config
from anchorline.stream.topics import Place, Topics, key_of, place_of
from anchorline_chain_writer.chain import AnchorReceipt, Web3Registry, rpc_errors

log = logging.getLogger(__name__)

WATCH_GROUP = "anchorline-chain-writer-watch"
GIVE_UP_S = 900.0  # a request never seen anchored in this long (it failed, or went dead)
MAX_WATCHED = 1000  # requests held per partition before it pauses
Outgoing = tuple[str, bytes | None, bytes, list[headers.Header]]


class Verdict(enum.Enum):
    WAIT = "wait"
    FINAL = "final"
    GONE = "reorganised away"
    GIVE_UP = "never seen anchored"


class AnchorChain(Protocol):
    """What the watch asks the chain."""

    def find_anchor(self, root: bytes) -> AnchorReceipt | None: ...

    def head(self) -> int: ...

    def canonical_hash(self, number: int) -> str | None: ...

    def finalized(self) -> int | None:
        """The node's `finalized` block, or None where it has no such tag."""


@dataclass
class Watched:
    """One anchor request in the watch: its place in the topic and the anchor last seen."""

    request: AnchorRequested
    offset: int
    generations: dict[str, int]
    since: float
    seen: AnchorReceipt | None = None


def judge(
    watched: Watched, chain: AnchorChain, *, depth: int, now: float, give_up_s: float = GIVE_UP_S
) -> Verdict:
    """Where the watched root stands; remembers the anchor the first time it sees one."""
    if watched.seen is None:
        watched.seen = chain.find_anchor(bytes.fromhex(watched.request.root[2:]))
        if watched.seen is None:
            return Verdict.GIVE_UP if now - watched.since >= give_up_s else Verdict.WAIT
    seen = watched.seen
    if chain.canonical_hash(seen.block_number) != seen.block_hash:
        return Verdict.GONE
    if chain.head() - seen.block_number + 1 >= depth:
        return Verdict.FINAL
    finalized = chain.finalized()
    return (
        Verdict.FINAL if finalized is not None and seen.block_number <= finalized else Verdict.WAIT
    )


def anchor_again(watched: Watched, topics: Topics, *, now: datetime) -> list[Outgoing]:
    """The request once more, its jobs a generation on, and a `queued` status each saying why."""
    request, seen = watched.request, watched.seen
    assert seen is not None
    bumped = {job: watched.generations.get(job, 0) + 1 for job in request.job_ids}
    note = f"block {seen.block_number} ({seen.block_hash}) was reorganised away: anchoring again"
    out: list[Outgoing] = [
        (
            topics.for_event(request),  # the lane of its priority
            headers_key(request),
            codec.encode(request),
            headers.encode_generations(bumped),
        )
    ]
    for ref in refs_of(request):
        again = replace(ref, generation=bumped[ref.job_id])
        queued = again.status(Stage.ANCHOR, StageState.QUEUED, occurred_at=now, note=note)
        status_headers = headers.encode_generations({ref.job_id: queued.generation})
        out.append((topics.job_status, ref.job_id.encode(), codec.encode(queued), status_headers))
    return out


def headers_key(request: AnchorRequested) -> bytes:
    return key_of(request).encode()


class Partition:
    """The watched requests of one partition, in order. Each is judged every round (so that an
    anchor is seen before a reorg can take it), but one is committed only after those before it."""

    def __init__(self) -> None:
        self.queue: deque[Watched] = deque()
        self.settled: set[int] = set()

    def settle(
        self,
        chain: AnchorChain,
        *,
        depth: int,
        now: float,
        send: Callable[[Watched], None],
    ) -> int | None:
        """Judge what is not settled yet; the offset to commit past, if the oldest moved on."""
        for item in self.queue:
            if item.offset in self.settled:
                continue
            verdict = judge(item, chain, depth=depth, now=now)
            if verdict is Verdict.GONE:
                send(item)
            elif verdict is Verdict.GIVE_UP:
                log.warning("root %s never seen anchored; no longer watched", item.request.root)
            if verdict is not Verdict.WAIT:
                self.settled.add(item.offset)
        done: int | None = None
        while self.queue and self.queue[0].offset in self.settled:
            done = self.queue.popleft().offset + 1
            self.settled.discard(done - 1)
        return done


class OneRound:
    """The chain as it stands for one round of judgements: each question asked once."""

    def __init__(self, chain: AnchorChain) -> None:
        self.chain = chain
        self._head: int | None = None
        self._hashes: dict[int, str | None] = {}
        self._finalized: int | None = None
        self._asked_finalized = False

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        return self.chain.find_anchor(root)

    def head(self) -> int:
        if self._head is None:
            self._head = self.chain.head()
        return self._head

    def canonical_hash(self, number: int) -> str | None:
        if number not in self._hashes:
            self._hashes[number] = self.chain.canonical_hash(number)
        return self._hashes[number]

    def finalized(self) -> int | None:
        if not self._asked_finalized:
            self._finalized, self._asked_finalized = self.chain.finalized(), True
        return self._finalized


class FinalityWatch:
    """The watch's loop: read anchor requests, judge the watched ones every `check_s`, send
    again what a reorg took, commit each partition's settled front. Run in the chain-writer's
    process."""

    def __init__(
        self,
        settings: Settings,
        chain: AnchorChain,
        *,
        check_s: float = 2.0,
        max_watched: int = MAX_WATCHED,
    ) -> None:
        self.settings = settings
        self.chain = chain
        self.depth = settings.finality_depth
        self.check_s = check_s
        self.max_watched = max_watched
        self.topics = settings.topics
        self.consumer = Consumer(consumer_config(settings, group_id=WATCH_GROUP))
        self.producer = Producer(producer_config(settings))
        self.partitions: dict[Place, Partition] = {}

    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(
            list(self.topics.lanes(Stage.ANCHOR)), on_revoke=self._forget, on_lost=self._forget
        )
        checked = 0.0
        try:
            while not stop.is_set():
                message = self.consumer.poll(min(1.0, self.check_s))
                if message is not None and message.error() is None:
                    self._watch(message)
                if time.monotonic() - checked >= self.check_s:
                    self._settle()
                    checked = time.monotonic()
        finally:
            self.producer.flush(10)
            self.consumer.close()

    def _watch(self, message: Message) -> None:
        place = place_of(message)
        try:
            request = codec.decode(message.value(), AnchorRequested)
        except SerializationError:
            return  # the chain-writer dead-letters it; nothing was anchored to watch
        offset = message.offset()
        assert offset is not None
        generations = headers.known_generations(headers.as_map(message.headers()))
        partition = self.partitions.setdefault(place, Partition())
        partition.queue.append(Watched(request, offset, generations, time.monotonic()))
        if len(partition.queue) >= self.max_watched:
            # Roots wait for blocks to come: hold the partition rather than memory without end.
            self.consumer.pause([TopicPartition(place[0], place[1])])

    def _settle(self) -> None:
        chain = OneRound(self.chain)
        for place, partition in list(self.partitions.items()):
            try:
                done = partition.settle(
                    chain, depth=self.depth, now=time.monotonic(), send=self._send
                )
                if done is not None:
                    self.consumer.commit(
                        offsets=[TopicPartition(place[0], place[1], done)], asynchronous=False
                    )
            except (Retryable, KafkaException) as exc:
                # The node or the broker is away: the watch waits, as the stages do.
                log.warning("finality watch: %s; checking again later", exc)
                return
            except Exception:
                # Anything else is treated as the stages treat it: transient, tried again.
                log.exception("finality watch: checking again later")
                return
            if len(partition.queue) < self.max_watched:
                self.consumer.resume([TopicPartition(place[0], place[1])])

    def _send(self, watched: Watched) -> None:
        log.warning(
            "root %s left the chain after its jobs succeeded; anchoring it again",
            watched.request.root,
        )
        for topic, key, value, extra in anchor_again(watched, self.topics, now=utcnow()):
            self.producer.produce(topic, key=key, value=value, headers=extra)
        # Flushed before the request is committed past: a crash sends it again, which the
        # chain-writer and the projector take as the same generation once more.
        if self.producer.flush(30) > 0:
            raise Retryable("Kafka did not take the request to anchor again")

    def _forget(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for partition in partitions:
            self.partitions.pop((partition.topic, partition.partition), None)


class Web3AnchorChain:
    """The watch's questions through the chain-writer's web3 adapter (a registry of its own,
    so the watch keeps to its own rate limit)."""

    def __init__(self, registry: Web3Registry) -> None:
        self.registry = registry

    def find_anchor(self, root: bytes) -> AnchorReceipt | None:
        return self.registry.find_anchor(root)

    def head(self) -> int:
        with rpc_errors():
            return int(self.registry.w3.eth.block_number)

    def canonical_hash(self, number: int) -> str | None:
        return self.registry.canonical_hash(number)

    def finalized(self) -> int | None:
        with rpc_errors():
            try:
                return int(self.registry.w3.eth.get_block("finalized")["number"])
            except (BlockNotFound, Web3RPCError, ValueError):
                return None  # a node without the tag (or no block finalized yet)
