"""One exception tree that tells the runner what to do with a message."""

from __future__ import annotations


class AnchorlineError(Exception):
    """Base of every error anchorline raises on purpose."""


class Retryable(AnchorlineError):
    """A transient failure (RPC down, timeout, blob not there yet): try the message again later."""


class Permanent(AnchorlineError):
    """Bad input: the job fails with this reason and is not retried."""


class BadInput(Permanent, ValueError):
    """Input from outside breaks a bound or is malformed; the message says which and how."""


class OutputTooLarge(Permanent):
    """A job's output cannot fit in a Kafka record: the job fails with its size and the limit."""


class Poison(AnchorlineError):
    """The message cannot be decoded or breaks its schema: it goes to the dead-letter topic."""


class SerializationError(Poison):
    """Avro encoding or decoding failed."""


class ConfigurationError(AnchorlineError):
    """A setting is missing or malformed; raised at start-up, never per message."""


class IncompleteRead(AnchorlineError):
    """A topic could not be read to its end: the reader stopped moving (the broker away)
    before it got there. What was read is not the whole topic."""
