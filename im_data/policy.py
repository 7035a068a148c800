"""The weighting policy: a frozen, versioned mapping from token role to loss weight.

>>> WeightPolicy.preset("it").weights_array().tolist()
[0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
>>> WeightPolicy.preset("im").weights_array().tolist()
[0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
>>> WeightPolicy.wit(0.1, 1.0).user
0.1

The order of ``weights_array()`` is the role code order of :class:`im_data.roles.Role`
(template, system, user, tool, assistant, assistant_end).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Mapping

import numpy as np

from .roles import ROLE_LABELS, Role

POLICY_VERSION = 1
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
            object.__setattr__(self, label, value)
        if not isinstance(self.last_assistant_only, bool):
            raise TypeError("last_assistant_only must be a bool")
        if self.assistant <= 0 and self.assistant_end <= 0 and not any(
            getattr(self, r) > 0 for r in ("system", "user", "tool", "template")
        ):
            raise ValueError("weight policy gives every role weight 0: nothing would be trained")

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def preset(cls, mode: str, *, prompt_weight: float | None = None, response_weight: float | None = None,
               last_assistant_only: bool = False) -> "WeightPolicy":
        """``it`` (standard instruction tuning), ``im`` (the paper's Eq. 4) or ``wit(prompt, response)``."""
        if mode == "it":
            return cls(name="it", last_assistant_only=last_assistant_only)
        if mode == "im":
            return cls(system=1.0, user=1.0, tool=1.0, name="im", last_assistant_only=last_assistant_only)
        if mode == "wit":
            if prompt_weight is None:
                raise ValueError("mode 'wit' needs a prompt weight")
            return cls.wit(prompt_weight, 1.0 if response_weight is None else response_weight,
                           last_assistant_only=last_assistant_only)
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")

    @classmethod
    def wit(cls, prompt: float, response: float = 1.0, *, last_assistant_only: bool = False) -> "WeightPolicy":
        """Weighted Instruction Tuning: prompt roles weigh ``prompt``, assistant roles ``response``."""
        return cls(system=prompt, user=prompt, tool=prompt, assistant=response, assistant_end=response,
                   name="wit", last_assistant_only=last_assistant_only)

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
        return cls(**dict(data))

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
        out[role] = float(value)
    return out
