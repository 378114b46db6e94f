"""Warm-up: which history each strategy needs at start, and picking it from the bars read.

A strategy declares what it needs with ``Strategy.warmup`` (``[Warmup("1m", 20)]``: the last 20
closed 1m bars of each of its symbols, on its data venue); ``warmup_bars`` in its configuration
overrides the number (0: none). The strategy service reads the bars from the BARS stream, picks them
with ``pick_latest`` and hands each strategy its own with ``bars_for`` to ``StrategyRunner.warm_up``,
which feeds them to ``on_bar`` while the context drops every order asked for (strategies act on live
data only).

Pure: the reading is the service's (``trader.services.strategy``), which says why it reads JetStream
rather than QuestDB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from trader.bus.streams import bar_subject
from trader.config import StrategyConfig
from trader.marketdata.bars import timeframe_ms
from trader.messages import Bar
from trader.strategies.base import StrategyConfigError, Warmup
from trader.strategies.context import data_venue_of


@dataclass(frozen=True, slots=True)
class HistoryBar:
    """A bar as the BARS stream holds it: its sequence and subject, for ordering and selection."""

    seq: int
    subject: str
    bar: Bar


def warmup_subjects(config: StrategyConfig, declared: Iterable[Warmup]) -> dict[str, int]:
    """How many bars of each ``market.bar.<tf>.<venue>.<SYMBOL>`` subject a strategy needs (its data
    venue's: no other venue's bars warm it up); a declaration
    that cannot be met is a ``StrategyConfigError``."""
    wanted: dict[str, int] = {}
    for need in declared:
        try:
            timeframe_ms(need.timeframe)
        except ValueError as exc:
            raise StrategyConfigError(f"strategy {config.name}: warm-up: {exc}") from None
        bars = need.bars if config.warmup_bars is None else config.warmup_bars
        if bars < 0:
            raise StrategyConfigError(f"strategy {config.name}: warm-up of {bars} bars")
        for symbol in config.symbols:
            subject = bar_subject(need.timeframe, data_venue_of(config), symbol)
            wanted[subject] = max(wanted.get(subject, 0), bars)
    return {subject: bars for subject, bars in wanted.items() if bars > 0}


def merge_wanted(wanted: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """What all the strategies need together: the most bars any of them wants, per subject."""
    merged: dict[str, int] = {}
    for one in wanted:
        for subject, bars in one.items():
            merged[subject] = max(merged.get(subject, 0), bars)
    return merged


def pick_latest(history: Iterable[HistoryBar], wanted: Mapping[str, int]) -> dict[str, list[HistoryBar]]:
    """The last ``wanted[subject]`` closed bars of each subject, by ``start``, oldest first.

    A bar amended (published again with the same ``start``) counts once, in its latest version: the
    strategy hears of the bar as it finally is."""
    latest: dict[tuple[str, int], HistoryBar] = {}
    for item in history:
        if item.subject in wanted and item.bar.closed:
            key = (item.subject, item.bar.start)
            if key not in latest or latest[key].seq < item.seq:
                latest[key] = item
    picked: dict[str, list[HistoryBar]] = {}
    for (subject, _start), item in sorted(latest.items()):
        picked.setdefault(subject, []).append(item)
    return {subject: items[-wanted[subject] :] for subject, items in picked.items()}


def bars_for(wanted: Mapping[str, int], picked: Mapping[str, list[HistoryBar]]) -> list[Bar]:
    """One strategy's warm-up bars: its own number of each subject, in the order it would have heard
    of them live: by the time each bar closed, then as published."""
    mine = [item for subject, bars in wanted.items() for item in picked.get(subject, [])[-bars:]]
    return [item.bar for item in sorted(mine, key=_close_order)]


def _close_order(item: HistoryBar) -> tuple[int, int]:
    # The subject's timeframe (checked in ``warmup_subjects``), not the body's: it is what was asked.
    timeframe = item.subject.split(".")[2]
    return item.bar.start + timeframe_ms(timeframe), item.seq


def short_of(wanted: Mapping[str, int], picked: Mapping[str, list[HistoryBar]]) -> dict[str, int]:
    """The subjects with fewer bars than wanted, and how many are wanted of them."""
    return {s: bars for s, bars in wanted.items() if len(picked.get(s, [])) < bars}
