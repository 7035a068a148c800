"""Token roles: ONE data table (:data:`ROLE_TABLE`) that everything else reads.

Every token of a rendered conversation gets exactly one role. The integer codes are part of the shard format
(the ``roles`` column is int8) and are written into every manifest; never renumber them. A new role is one
row here: the weight presets (by ``side``), the length statistics (by ``content``), the views (by colour) and
the trainer's per-role metrics all read this table.

====  =============  ===========  =======  ==========================================================
code  name           side         content  meaning
====  =============  ===========  =======  ==========================================================
0     template       template     no       BOS, role headers, separators, rendered tool definitions:
                                           anything the template adds
1     system         instruction  yes      content of a system message
2     user           instruction  yes      content of a user message
3     tool           instruction  yes      content of a tool message (a tool's result)
4     assistant      output       yes      content of an assistant message, and other text the template
                                           emits inside an assistant turn between its parts
5     assistant_end  output       no       what the template emits right after an assistant turn, up to
                                           and including the first special token (EOS or end-of-turn)
6     reasoning      output       yes      an assistant's reasoning, with its tags (``<think>``...)
7     tool_call      output       yes      an assistant's tool call as rendered, with its wrapper
                                           (``<tool_call>...</tool_call>``)
====  =============  ===========  =======  ==========================================================

Output-side text is what the model generates at inference: everything the template emits inside an assistant
turn after the generation prompt (what ``add_generation_prompt=True`` appends) and before its end of turn.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

SIDES = ("template", "instruction", "output")


@dataclasses.dataclass(frozen=True)
class RoleSpec:
    """One row of the role table."""

    code: int
    name: str
    side: str  # one of SIDES: which weight the presets give it (template: 0, instruction: p, output: r)
    content: bool  # counted in the length statistics (instruction or output length)
    short: str  # short label for narrow tables (audit report)
    terminal_bg: tuple[int, int, int]  # display colour, terminal (dark theme)
    html_bg: str  # display colour, HTML (light theme)
    meaning: str


ROLE_TABLE: tuple[RoleSpec, ...] = (
    RoleSpec(0, "template", "template", False, "tmpl", (48, 48, 48), "#e4e4e4", "text the chat template adds"),
    RoleSpec(1, "system", "instruction", True, "sys", (88, 40, 110), "#ead7f5", "system message content"),
    RoleSpec(2, "user", "instruction", True, "user", (24, 60, 130), "#d4e3fb", "user message content"),
    RoleSpec(3, "tool", "instruction", True, "tool", (0, 95, 95), "#cdeeee", "tool result content"),
    RoleSpec(4, "assistant", "output", True, "asst", (25, 95, 40), "#d5f2d9", "assistant message content"),
    RoleSpec(5, "assistant_end", "output", False, "end", (110, 90, 10), "#f3e7b8",
             "end of an assistant turn, up to and including its first special token"),
    RoleSpec(6, "reasoning", "output", True, "think", (120, 55, 20), "#f8dcc8", "assistant reasoning, with its tags"),
    RoleSpec(7, "tool_call", "output", True, "call", (20, 80, 120), "#cfe9f7",
             "assistant tool call, with its wrapper"),
)
assert [r.code for r in ROLE_TABLE] == list(range(len(ROLE_TABLE))), "role codes must be 0..n-1 in order"
assert all(r.side in SIDES for r in ROLE_TABLE)


class _RoleEnum(enum.IntEnum):
    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def spec(self) -> RoleSpec:
        return ROLE_TABLE[int(self)]

    @classmethod
    def from_label(cls, label: str) -> "Role":
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}; expected one of {ROLE_LABELS}") from None


#: ``Role.TEMPLATE`` ... ``Role.TOOL_CALL``, built from the table.
Role = _RoleEnum("Role", [(r.name.upper(), r.code) for r in ROLE_TABLE], module=__name__)

ROLE_LABELS: tuple[str, ...] = tuple(r.name for r in ROLE_TABLE)
#: ``{"template": 0, "system": 1, ...}`` as written into manifests.
ROLE_CODES: dict[str, int] = {r.name: r.code for r in ROLE_TABLE}
#: Message roles accepted in conversations (the other token roles are parts of messages or template text).
MESSAGE_ROLES: tuple[str, ...] = ("system", "user", "tool", "assistant")
#: Roles whose content counts as *instruction* in length statistics (the paper's instruction length).
INSTRUCTION_ROLES: tuple[Role, ...] = tuple(Role(r.code) for r in ROLE_TABLE if r.side == "instruction" and r.content)
#: Roles whose content counts as *output* (assistant, reasoning, tool_call).
OUTPUT_ROLES: tuple[Role, ...] = tuple(Role(r.code) for r in ROLE_TABLE if r.side == "output" and r.content)
#: Roles the model generates (every output-side role, ``assistant_end`` included): trained by ``it``.
OUTPUT_SIDE_ROLES: tuple[Role, ...] = tuple(Role(r.code) for r in ROLE_TABLE if r.side == "output")
NUM_ROLES = len(ROLE_TABLE)



def role_mask(roles) -> np.ndarray:
    """Boolean lookup table indexed by role code: True for ``roles`` (``mask[codes]`` tests many tokens at once)."""
    mask = np.zeros(NUM_ROLES, dtype=bool)
    mask[[int(r) for r in roles]] = True
    return mask


#: Instruction length: system + user + tool content.
INSTRUCTION_MASK = role_mask(INSTRUCTION_ROLES)
#: Output length: assistant + reasoning + tool_call content.
OUTPUT_MASK = role_mask(OUTPUT_ROLES)
#: Every output-side role (what ``it`` trains and ``last_assistant_only`` zeroes in earlier turns).
OUTPUT_SIDE_MASK = role_mask(OUTPUT_SIDE_ROLES)
#: Roles with content (what comes from the record, not from the template).
CONTENT_MASK = role_mask(r.code for r in ROLE_TABLE if r.content)
#: Roles counted as template tokens in the length statistics (template, assistant_end: no content).
TEMPLATE_COUNT_MASK = ~CONTENT_MASK


def roles_on_side(side: str) -> tuple[str, ...]:
    """Names of the roles on one side (``"instruction"`` → ``("system", "user", "tool")``)."""
    if side not in SIDES:
        raise ValueError(f"unknown side {side!r}; expected one of {SIDES}")
    return tuple(r.name for r in ROLE_TABLE if r.side == side)


def content_roles(side: str) -> tuple[str, ...]:
    """Names of the content roles on one side: what the instruction / output lengths count
    (``"output"`` → ``("assistant", "reasoning", "tool_call")``)."""
    return tuple(name for name in roles_on_side(side) if ROLE_TABLE[ROLE_CODES[name]].content)


def count_per_role(rows: np.ndarray, roles: np.ndarray, num_rows: int, weights: np.ndarray | None = None
                   ) -> np.ndarray:
    """``[num_rows, NUM_ROLES]``: each row's tokens of each role (with ``weights``: their summed weight), from
    the flat ``rows`` (the row of each token) and ``roles`` (its role code). The one place that counts per role.

    >>> count_per_role(np.array([0, 0, 1]), np.array([1, 4, 4]), 2)[:, [1, 4]].tolist()
    [[1, 1], [0, 1]]
    """
    keys = np.asarray(rows, dtype=np.int64) * NUM_ROLES + np.asarray(roles, dtype=np.int64)
    return np.bincount(keys, weights=weights, minlength=num_rows * NUM_ROLES).reshape(num_rows, NUM_ROLES)
