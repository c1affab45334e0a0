"""Numbers from people and from JSON: one parser for "inf" and friends, one range check.

Thresholds such as BiLD's rollback may be infinite, and strict JSON has no Infinity, so
infinities travel as the strings "inf" / "-inf". Every command-line option, spec string,
config file and server request goes through these functions, so they all accept the same text.
"""
from __future__ import annotations

import math

from .errors import ConfigError

_INF = {"inf": math.inf, "+inf": math.inf, "infinity": math.inf, "+infinity": math.inf,
        "-inf": -math.inf, "-infinity": -math.inf}


def parse_float(text: str, name: str) -> float:
    """A float from text ("inf" and "-inf" allowed); a bad value is a ConfigError naming `name`."""
    low = str(text).strip().lower()
    if low in _INF:
        return _INF[low]
    try:
        return float(low)
    except ValueError:
        raise ConfigError(f"{name} must be a number (inf allowed), got {text!r}") from None


def parse_floats(text: str, name: str) -> list[float]:
    """A comma-separated list of floats, e.g. "1,2,5,inf"."""
    return [parse_float(v, name) for v in str(text).split(",") if v.strip()]


def parse_value(text: str):
    """A value in a spec string ("bild:rollback=inf,max_small_steps=none"): None, inf, an int,
    a float, or else the text itself."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in _INF:
        return _INF[low]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text.strip()


def check_number(name: str, value, low: float = 0.0, allow_inf: bool = False) -> float:
    """`value` as a float if it is a number ≥ low (finite unless allow_inf), else a ConfigError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if not ok or value < low or (math.isinf(value) and not allow_inf):
        rng = f"≥ {low:g}" + (" (inf allowed)" if allow_inf else ", finite")
        raise ConfigError(f"{name} must be a number {rng}, got {value!r}")
    return float(value)


def json_number(x: float | None):
    """x for strict JSON: infinities as the strings "inf" / "-inf", NaN as "nan"."""
    if x is None or math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def from_json_number(value, name: str) -> float:
    """The inverse of json_number: a number, or one of the strings it writes."""
    if isinstance(value, str):
        return parse_float(value, name)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
        raise ConfigError(f"{name} must be a number (inf and -inf allowed), got {value!r}")
    return float(value)
