"""Which waiting records a stage takes next: by priority, weighted, without starving any.

Pure: the runner (through stream/lanes.py) adds what it fetched from each priority's topic and
asks for its next batch. Inside a priority records leave in the order they came, so that each
partition's records are handled, and their offsets committed, in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from anchorline.events import PRIORITIES, Priority

T = TypeVar("T")

DEFAULT_WEIGHTS: Mapping[Priority, int] = {Priority.HIGH: 6, Priority.NORMAL: 3, Priority.LOW: 1}


class WeightedPicker(Generic[T]):
    """One queue a priority; `take` serves the queues that hold something by smooth weighted
    round robin (nginx's): with weights 6/3/1 and all three waiting, every run of ten picks
    takes six high, three normal and one low, interleaved, so low waits at most nine picks."""

    def __init__(self, weights: Mapping[Priority, int] = DEFAULT_WEIGHTS) -> None:
        if any(weights.get(priority, 0) < 1 for priority in PRIORITIES):
            raise ValueError("every priority needs a weight of at least 1")
        self.weights = {priority: weights[priority] for priority in PRIORITIES}
        self.queues: dict[Priority, deque[T]] = {priority: deque() for priority in PRIORITIES}
        self.credit = dict.fromkeys(PRIORITIES, 0)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, priority: Priority, item: T) -> None:
        self.queues[priority].append(item)
        self.size += 1

    def backlog(self, priority: Priority) -> int:
        return len(self.queues[priority])

    def take(self, limit: int) -> list[T]:
        """Up to `limit` items, the queues served by their weights."""
        out: list[T] = []
        while len(out) < limit and self.size:
            waiting = [priority for priority in PRIORITIES if self.queues[priority]]
            if len(waiting) == 1:  # the common case, one priority in use: no picking at all
                out.extend(self._drain(waiting[0], limit - len(out)))
                break
            chosen = self._pick(waiting)
            out.append(self.queues[chosen].popleft())
            self.size -= 1
            if not self.queues[chosen]:
                self.credit[chosen] = 0
        return out

    def _pick(self, waiting: list[Priority]) -> Priority:
        total = 0
        for priority in waiting:
            self.credit[priority] += self.weights[priority]
            total += self.weights[priority]
        chosen = max(waiting, key=self.credit.__getitem__)  # a tie goes to the more urgent
        self.credit[chosen] -= total
        return chosen

    def _drain(self, priority: Priority, limit: int) -> list[T]:
        queue = self.queues[priority]
        count = min(limit, len(queue))
        taken = [queue.popleft() for _ in range(count)]
        self.size -= count
        self.credit[priority] = 0
        return taken

    def drop(self, unwanted: Callable[[T], bool]) -> int:
        """Remove the items `unwanted` picks (records of a partition rewound or given up, which
        are fetched again); how many went."""
        dropped = 0
        for priority, queue in self.queues.items():
            kept = deque(item for item in queue if not unwanted(item))
            dropped += len(queue) - len(kept)
            self.queues[priority] = kept
            if not kept:
                self.credit[priority] = 0
        self.size -= dropped
        return dropped
