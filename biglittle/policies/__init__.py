"""Policies: what turns the one decode loop (or a loop of their own) into a method."""
from .base import Policy
from .cascade import Cascade
from .contrastive import Contrastive
from .registry import POLICIES, apply_overrides, load_policy_config, parse_policy, read_config
from .router import Router
from .token import BigOnly, BiLD, SmallOnly, Speculative

__all__ = ["POLICIES", "BigOnly", "BiLD", "Cascade", "Contrastive", "Policy", "Router", "SmallOnly",
           "Speculative", "apply_overrides", "load_policy_config", "parse_policy", "read_config"]
