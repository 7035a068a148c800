"""The weighting policy: a frozen, versioned mapping from token role to loss weight.

>>> WeightPolicy.preset("it").weights_array().tolist()
[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
>>> WeightPolicy.preset("im").weights_array().tolist()
[0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
>>> WeightPolicy.wit(0.1, 1.0).user
0.1

The order of ``weights_array()`` is the role code order of :class:`im_data.roles.Role`
(template, system, user, tool, assistant, assistant_end, reasoning, tool_call). Presets are derived from each
role's ``side`` in :data:`im_data.roles.ROLE_TABLE`: ``it`` trains the output side, ``im`` the instruction side too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping

import numpy as np

from .roles import ROLE_LABELS, Role, roles_on_side

POLICY_VERSION = 2
#: The largest loss weight of a role: float32 weights, and losses and weight sums that stay finite in training.
MAX_WEIGHT = 1e6
#: Versions :meth:`WeightPolicy.from_dict` reads (v1 had no reasoning/tool_call: they take the assistant weight).
READABLE_VERSIONS = (1, 2)
MODES = ("it", "im", "wit")


@dataclasses.dataclass(frozen=True)
class WeightPolicy:
    """Per-role loss weights (float32, never rounded) plus the last-assistant-turn switch.

    ``last_assistant_only``: only the final assistant message (and its ``assistant_end``) keeps the
    assistant weights; earlier assistant turns weigh 0. Instruction roles keep their weights.
    ``name`` is informational (``it``, ``im``, ``wit`` or ``custom``); the fingerprint covers it.
    """

    template: float = 0.0
    system: float = 0.0
    user: float = 0.0
    tool: float = 0.0
    assistant: float = 1.0
    assistant_end: float = 1.0
    reasoning: float = 1.0
    tool_call: float = 1.0
    last_assistant_only: bool = False
    name: str = "custom"
    version: int = POLICY_VERSION

    def __post_init__(self) -> None:
        if self.version != POLICY_VERSION:
            raise ValueError(f"unsupported weight policy version {self.version} (this is {POLICY_VERSION})")
        for label in ROLE_LABELS:
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"weight for {label!r} must be a number, got {value!r}")
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"weight for {label!r} must be finite and >= 0, got {value!r}")
            if value > MAX_WEIGHT:
                raise ValueError(f"weight for {label!r} must be at most {MAX_WEIGHT:g}, got {value!r}")
            object.__setattr__(self, label, value)
        if not isinstance(self.last_assistant_only, bool):
            raise TypeError("last_assistant_only must be a bool")
        if not any(getattr(self, r) > 0 for r in ROLE_LABELS):
            raise ValueError("weight policy gives every role weight 0: nothing would be trained")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def preset(cls, mode: str, *, prompt_weight: float | None = None, response_weight: float | None = None,
               last_assistant_only: bool = False) -> "WeightPolicy":
        """``it`` (standard instruction tuning), ``im`` (the paper's Eq. 4) or ``wit(prompt, response)``."""
        if mode == "it":
            return cls._by_side(0.0, 1.0, name="it", last_assistant_only=last_assistant_only)
        if mode == "im":
            return cls._by_side(1.0, 1.0, name="im", last_assistant_only=last_assistant_only)
        if mode == "wit":
            if prompt_weight is None:
                raise ValueError("mode 'wit' needs a prompt weight")
            return cls.wit(prompt_weight, 1.0 if response_weight is None else response_weight,
                           last_assistant_only=last_assistant_only)
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")

    @classmethod
    def wit(cls, prompt: float, response: float = 1.0, *, last_assistant_only: bool = False) -> "WeightPolicy":
        """Weighted Instruction Tuning: prompt roles weigh ``prompt``, assistant roles ``response``."""
        return cls._by_side(prompt, response, name="wit", last_assistant_only=last_assistant_only)

    @classmethod
    def _by_side(cls, instruction: float, output: float, **kwargs: Any) -> "WeightPolicy":
        weights = {r: 0.0 for r in roles_on_side("template")}
        weights.update({r: instruction for r in roles_on_side("instruction")})
        weights.update({r: output for r in roles_on_side("output")})
        return cls(**weights, **kwargs)

    def with_weights(self, overrides: Mapping[str, float]) -> "WeightPolicy":
        """Return a copy with some role weights replaced (``{"system": 0.0}``); the name becomes custom."""
        for key in overrides:
            if key not in ROLE_LABELS:
                raise ValueError(f"unknown role {key!r} in weight override; expected one of {ROLE_LABELS}")
        if not overrides:
            return self
        return dataclasses.replace(self, name="custom", **{k: float(v) for k, v in overrides.items()})

    # -- use ----------------------------------------------------------------------------------
    def weight(self, role: Role | str) -> float:
        return getattr(self, Role.from_label(role).label if isinstance(role, str) else Role(role).label)

    def weights_array(self) -> np.ndarray:
        """float32 lookup table indexed by role code."""
        return np.array([getattr(self, label) for label in ROLE_LABELS], dtype=np.float32)

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "WeightPolicy":
        data = dict(data)
        version = data.get("version", POLICY_VERSION)
        if version not in READABLE_VERSIONS:
            raise ValueError(f"unsupported weight policy version {version} (readable: {READABLE_VERSIONS})")
        if version == 1:  # v1 knew no reasoning/tool_call roles: they are assistant output
            data.setdefault("reasoning", data.get("assistant", 1.0))
            data.setdefault("tool_call", data.get("assistant", 1.0))
            data["version"] = POLICY_VERSION
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "WeightPolicy":
        return cls.from_dict(json.loads(text))

    @property
    def fingerprint(self) -> str:
        """Stable 16-hex-digit digest of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def is_binary(self) -> bool:
        """True when every weight is 0 or 1, so ``labels`` (-100 where w == 0) carry the policy exactly."""
        return all(getattr(self, r) in (0.0, 1.0) for r in ROLE_LABELS)


def parse_weight_overrides(items: list[str] | None) -> dict[str, float]:
    """Parse CLI ``ROLE=W`` items into a dict (``["user=0.5", "system=0"]``)."""
    out: dict[str, float] = {}
    for item in items or []:
        role, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--weights expects ROLE=W, got {item!r}")
        role = role.strip()
        if role not in ROLE_LABELS:
            raise ValueError(f"unknown role {role!r} in --weights; expected one of {ROLE_LABELS}")
        try:
            out[role] = float(value)
        except ValueError:
            raise ValueError(f"--weights expects ROLE=W with W a number, got {item!r}") from None
    return out
