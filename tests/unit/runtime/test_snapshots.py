"""Snapshot records: what is stored, and the three ways a snapshot is refused (a full replay then)."""

from __future__ import annotations

import msgspec
import pytest

from trader.runtime.snapshots import (
    Inline,
    InObjectStore,
    _entry,
    compress,
    decode_record,
    decompress,
    encode_record,
)


class State(msgspec.Struct):
    counts: dict[str, int]
    seen: list[str]


def test_a_snapshot_comes_back_with_the_sequences_it_covers() -> None:
    data = encode_record(State({"a": 1}, ["x"]), {"EXEC": 42}, version=3, taken_ms=1_000)
    loaded = decode_record(data, State, version=3)
    assert loaded.state == State({"a": 1}, ["x"])
    assert (loaded.covers, loaded.taken_ms) == ({"EXEC": 42}, 1_000)


def test_a_snapshot_of_another_schema_version_is_not_read() -> None:
    data = encode_record(State({}, []), {"EXEC": 1}, version=1, taken_ms=0)
    with pytest.raises(ValueError, match="schema version 1, this code reads 2"):
        decode_record(data, State, version=2)


@pytest.mark.parametrize("cut", [0, 1, 5, -1])
def test_a_truncated_snapshot_is_corrupt(cut: int) -> None:
    data = encode_record(State({"a": 1}, ["x"] * 10), {"EXEC": 7}, version=1, taken_ms=0)
    with pytest.raises(ValueError, match="corrupt"):
        decode_record(data[:cut], State, version=1)


def test_a_state_that_does_not_fit_its_type_is_corrupt() -> None:
    data = encode_record({"counts": "not a map", "seen": []}, {"EXEC": 7}, version=1, taken_ms=0)
    with pytest.raises(ValueError, match="corrupt snapshot state"):
        decode_record(data, State, version=1)


def test_the_key_holds_the_snapshot_or_a_pointer_to_it() -> None:
    for entry in (Inline(b"\x01\x02"), InObjectStore("ptrc.1.2", 10, "ab" * 32)):
        assert _entry.decode(msgspec.msgpack.encode(entry)) == entry
    with pytest.raises(msgspec.DecodeError):
        _entry.decode(b"\xc1garbage")


def test_a_snapshot_is_stored_compressed_and_comes_back_whole() -> None:
    state = State({f"k{i}": i for i in range(2_000)}, [f"paper:order-{i}:1" for i in range(2_000)])
    record = encode_record(state, {"EXEC": 9}, version=1, taken_ms=5)
    stored = compress(record)
    assert len(stored) < len(record) / 3  # like records: most of it goes
    assert decode_record(decompress(stored), State, version=1).state == state


def test_a_compressed_snapshot_that_is_damaged_is_corrupt() -> None:
    stored = compress(encode_record(State({"a": 1}, ["x"]), {"EXEC": 7}, version=1, taken_ms=0))
    for damaged in (stored[:-3], b"not zlib at all"):
        with pytest.raises(ValueError, match="corrupt snapshot"):
            decompress(damaged)


def test_an_entry_written_before_compression_reads_as_not_compressed() -> None:
    """A key written by the code of before (no ``compressed`` field) is read as it was written."""

    class OldInline(msgspec.Struct, frozen=True, tag="inline"):
        record: bytes

    class OldObject(msgspec.Struct, frozen=True, tag="object"):
        name: str
        size: int
        sha256: str

    assert _entry.decode(msgspec.msgpack.encode(OldInline(b"rec"))) == Inline(b"rec", compressed=False)
    old = OldObject("ptrc.1.2", 10, "ab" * 32)
    assert _entry.decode(msgspec.msgpack.encode(old)) == InObjectStore("ptrc.1.2", 10, "ab" * 32, False)
