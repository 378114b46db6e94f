"""A refused message, in one place below every service: ``InvalidMessage`` (a message that cannot be
taken, with the field at fault and what is wrong with it) and ``Refused`` (such a message on its way to
the dead letters, ``trader.bus.dlq``). The readers (``trader.bus.read``), the runtime's intake and the
decoders of the domain packages all raise and carry these."""

from __future__ import annotations

from dataclasses import dataclass


class InvalidMessage(ValueError):
    """A message refused with the field at fault and what was wrong with it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Refused:
    """A message a service could not take, and why: on its way to the dead letters."""

    seq: int | None
    subject: str
    data: bytes
    headers: dict[str, str] | None
    field: str
    reason: str
