"""The feature set, declared in settings (``feature_eng`` in ``trader.config.Settings``): which features,
with which windows, over which timeframes and venues.

In YAML::

    feature_eng:
      timeframes: [1m]
      features:
        - {kind: sma, window: 50}
        - {kind: macd, fast: 12, slow: 26, signal: 9}
        - {kind: rsi}            # its default window, 14

A kind no feature has, a parameter the kind does not take, or two features writing the same column is
refused when the settings load, naming the entry.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from trader.analytics.features.base import Feature
from trader.analytics.features.indicators import KINDS
from trader.marketdata.bars import timeframe_ms


class FeatureSpec(BaseModel):
    """One feature of the set: its ``kind`` and, where it takes them, its windows."""

    kind: str
    window: int | None = Field(default=None, ge=1, description="bars; None: the kind's default")
    fast: int | None = Field(default=None, ge=1, description="macd: the fast average's bars")
    slow: int | None = Field(default=None, ge=2, description="macd: the slow average's bars")
    signal: int | None = Field(default=None, ge=1, description="macd: the signal average's bars")
    deviations: float | None = Field(default=None, gt=0, description="bb_width: standard deviations")

    def params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(exclude={"kind"}).items() if v is not None}

    def build(self) -> Feature:
        """A fresh feature of this kind and windows; ``ValueError`` saying what is wrong."""
        kind = KINDS.get(self.kind)
        if kind is None:
            raise ValueError(f"feature kind {self.kind!r} is unknown; known: {', '.join(sorted(KINDS))}")
        taken = set(kind.__struct_fields__)
        extra = sorted(set(self.params()) - taken)
        if extra:
            raise ValueError(f"feature {self.kind} takes no {', '.join(extra)}")
        feature = kind(**self.params())
        fast, slow = getattr(feature, "fast", 0), getattr(feature, "slow", 1)
        if fast >= slow:
            raise ValueError(f"feature {self.kind}: fast ({fast}) must be below slow ({slow})")
        return feature


def default_features() -> list[FeatureSpec]:
    """Every kind once, at the windows traders use most."""
    return [
        FeatureSpec(kind="log_return"),
        FeatureSpec(kind="volatility", window=20),
        FeatureSpec(kind="sma", window=20),
        FeatureSpec(kind="ema", window=20),
        FeatureSpec(kind="rsi", window=14),
        FeatureSpec(kind="macd", fast=12, slow=26, signal=9),
        FeatureSpec(kind="bb_width", window=20, deviations=2.0),
        FeatureSpec(kind="atr", window=14),
        FeatureSpec(kind="vwap_dev", window=20),
        FeatureSpec(kind="volume_z", window=20),
        FeatureSpec(kind="imbalance"),
        FeatureSpec(kind="spread"),
    ]


class FeatureEngSettings(BaseModel):
    """feature-eng: the feature set and where it is computed."""

    timeframes: list[str] = Field(
        default_factory=lambda: ["1s", "1m"], description="bar timeframes the features are computed on"
    )
    venues: list[str] | None = Field(default=None, description="market-data venues; None: every venue")
    features: list[FeatureSpec] = Field(default_factory=default_features)
    snapshot_every_bars: int = Field(default=10_000, gt=0, description="the state snapshotted this often")
    snapshot_every_s: float = Field(default=60.0, gt=0, description="... or this often, whichever first")
    flush_interval_s: float = Field(default=0.25, gt=0, description="rows to QuestDB at most this often")

    @field_validator("timeframes")
    @classmethod
    def _timeframes(cls, value: list[str]) -> list[str]:
        for timeframe in value:
            timeframe_ms(timeframe)  # a ValueError says what is wrong with it
        return value

    @model_validator(mode="after")
    def _features_build_with_distinct_columns(self) -> FeatureEngSettings:
        seen: dict[str, int] = {}
        for i, spec in enumerate(self.features):
            try:
                feature = spec.build()
            except ValueError as exc:
                raise ValueError(f"feature_eng.features[{i}]: {exc}") from None
            for column in feature.columns():
                if column in seen:
                    raise ValueError(
                        f"feature_eng.features[{i}] writes {column}, as features[{seen[column]}] does"
                    )
                seen[column] = i
        return self

    def build(self) -> list[Feature]:
        return [spec.build() for spec in self.features]

    def columns(self) -> list[str]:
        return [column for feature in self.build() for column in feature.columns()]
