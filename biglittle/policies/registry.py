"""The one registry of policies: spec strings, tune config files, and a request's overrides.

    parse_policy("bild:fallback=0.6,rollback=5")
    parse_policy("speculative:draft=4,schedule=heuristic")
    parse_policy("tune.json")                         # a config file from `biglittle tune`
    apply_overrides(policy, {"rollback": "inf"})      # a server request's per-request settings
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from ..errors import ConfigError
from ..numbers import parse_value
from .base import Policy
from .cascade import Cascade
from .contrastive import Contrastive
from .router import FORMAT as ROUTER_FORMAT, Router
from .token import BigOnly, BiLD, SmallOnly, Speculative

POLICIES = {"big": BigOnly, "small": SmallOnly, "speculative": Speculative, "bild": BiLD,
            "contrastive": Contrastive, "cascade": Cascade, "router": Router}
CONFIG_FORMAT = "biglittle-config/1"
# policies that need files of their own (a trained router): only a config file may name them
FILE_POLICIES = ("router",)


def parse_policy(spec: str) -> Policy:
    """Parse "bild:fallback=0.6,rollback=5" or "speculative:draft=4,schedule=heuristic";
    a path ending in .json is a config file from `biglittle tune` or `biglittle router train`."""
    if is_config_file(spec):
        return load_policy_config(spec.strip())
    name, _, args = spec.partition(":")
    cls = POLICIES.get(name.strip())
    if cls is None:
        raise ConfigError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    known = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key not in known:
            raise ConfigError(f"policy {name!r} takes {', '.join(known) or 'no parameters'}; got {item!r}")
        kwargs[key] = parse_value(value)
    return cls(**kwargs)


def is_config_file(spec: str) -> bool:
    """Whether a policy spec names a config file rather than a policy."""
    return spec.strip().endswith(".json") and spec.partition(":")[0].strip() not in POLICIES


def apply_overrides(base: Policy, params: dict) -> Policy:
    """`base` with some of its settings replaced (a server request's per-request overrides).
    Unknown settings are a ConfigError naming what the policy takes; a rollback given as
    "inf"/"Infinity"/None (JSON has no infinity) means infinity."""
    known = {f.name for f in dataclasses.fields(base) if f.init}
    unknown = set(params) - known
    if unknown:
        raise ConfigError(f"policy {base.name!r} takes {', '.join(sorted(known)) or 'no parameters'}; "
                          f"got {', '.join(sorted(unknown))}")
    params = dict(params)
    if params.get("rollback", 0) in ("inf", "Infinity", None):
        params["rollback"] = math.inf
    return dataclasses.replace(base, **params)


# ---------------------------------------------------------------- config files

def load_policy_config(path: str | Path) -> Policy:
    """The policy a config file from `biglittle tune` names ({"policy": "<spec>", ...}); a router
    file from `biglittle router train` gives that router."""
    data = _read_json(path)
    if isinstance(data, dict) and data.get("format") == ROUTER_FORMAT:
        return Router.load(path)
    return parse_policy(read_config(path, data)["policy"])


def _read_json(path: str | Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e}") from None


def read_config(path: str | Path, data=None) -> dict:
    """A tune config file's content, checked to name a policy."""
    data = _read_json(path) if data is None else data
    if not isinstance(data, dict) or not isinstance(data.get("policy"), str):
        raise ConfigError(f"config file {str(path)!r} has no \"policy\" spec string")
    if data["policy"].strip().endswith(".json") and ":" not in data["policy"]:
        raise ConfigError(f"config file {str(path)!r} names another config file; give a policy spec")
    return data
