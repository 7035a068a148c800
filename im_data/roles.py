"""Token roles.

Every token of a rendered conversation gets exactly one role. The integer codes are part of the shard
format (the ``roles`` column is int8) and are written into every manifest; never renumber them.

======  ==============  ==========================================================
code    name            meaning
======  ==============  ==========================================================
0       template        BOS, role headers, separators: anything the template adds
1       system          content of a ``system`` message
2       user            content of a ``user`` message
3       tool            content of a ``tool`` message
4       assistant       content of an ``assistant`` message
5       assistant_end   what the template emits right after an assistant message's
                        content, up to and including the first special token (EOS or
                        end-of-turn); all of it when it holds no special token
======  ==============  ==========================================================
"""

from __future__ import annotations

import enum

import numpy as np


class Role(enum.IntEnum):
    TEMPLATE = 0
    SYSTEM = 1
    USER = 2
    TOOL = 3
    ASSISTANT = 4
    ASSISTANT_END = 5

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def from_label(cls, label: str) -> "Role":
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}; expected one of {ROLE_LABELS}") from None


ROLE_LABELS: tuple[str, ...] = tuple(r.label for r in Role)
#: ``{"template": 0, "system": 1, ...}`` as written into manifests.
ROLE_CODES: dict[str, int] = {r.label: int(r) for r in Role}
#: Message roles accepted in conversations (``assistant_end``/``template`` are token roles only).
MESSAGE_ROLES: tuple[str, ...] = ("system", "user", "tool", "assistant")
#: Roles whose content counts as *instruction* in length statistics (the paper's instruction length).
INSTRUCTION_ROLES: tuple[Role, ...] = (Role.SYSTEM, Role.USER, Role.TOOL)
#: Roles whose content counts as *output*.
OUTPUT_ROLES: tuple[Role, ...] = (Role.ASSISTANT,)
NUM_ROLES = len(Role)

INSTRUCTION_MASK = np.zeros(NUM_ROLES, dtype=bool)
INSTRUCTION_MASK[list(INSTRUCTION_ROLES)] = True
