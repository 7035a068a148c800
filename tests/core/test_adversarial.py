"""Adversarial conversations, table-driven across the built-in templates.

For every case the encoded example is checked against the conversation itself (never against find_spans):

* the content tokens form one run per message with non-empty content, in message order, with that message's role;
* each run covers that message's content exactly: the content (trimmed, for templates that trim) lies in the run's
  characters, and whatever else the run holds is only inside its first or last token (a token shared with the
  template: content wins at a boundary), so every content token overlaps the content it is labelled with;
* after each assistant message come exactly the template's end tokens, labelled ``assistant_end``.
"""

from __future__ import annotations

import pytest

from core_helpers import content_runs as _content_runs
from im_data import BUILTIN_TEMPLATES, Encoder, RecordError, WeightPolicy
from im_data.roles import Role

TRIMMING = {"llama3", "llama2", "gemma"}  # templates that `| trim` message content
NO_TOOL = {"llama2", "mistral", "gemma"}
END_TOKENS = {  # what each template emits after an assistant's content, up to and incl. the first special token
    "tulu": ["</s>"], "chatml": ["<|im_end|>"], "llama3": ["<|eot_id|>"], "llama2": [" ", "</s>"],
    "mistral": ["</s>"], "zephyr": ["</s>"], "gemma": ["<end_of_turn>"], "alpaca": ["</s>"],
    "chatml_tools": ["<|im_end|>"],
}
CONTENT_ROLES = {"system": Role.SYSTEM, "user": Role.USER, "tool": Role.TOOL, "assistant": Role.ASSISTANT}


def m(role, content):
    return {"role": role, "content": content}


def expected_content(template: str, content: str) -> str:
    return content.strip() if template in TRIMMING else content


def content_runs(ex):
    """Maximal runs of consecutive tokens with one content role: (role, [token indices])."""
    return _content_runs(ex.roles.tolist())


def check_example(ex, messages, template: str, end_tokens: list[str] | None = None,
                  all_ends: list[str] | None = None) -> None:
    text, offsets = ex.text, ex.offsets
    assert len(ex.input_ids) == len(ex.roles) == len(ex.loss_weights) == len(offsets)
    wanted = [(CONTENT_ROLES[msg["role"]], expected_content(template, msg["content"]))
              for msg in messages if expected_content(template, msg["content"])]
    runs = content_runs(ex)
    assert [int(r) for r, _ in runs] == [int(r) for r, _ in wanted], "role sequence of content runs"
    cursor = 0
    for (role, idx), (_, content) in zip(runs, wanted):
        first = offsets[idx[0]]
        run_start, run_end = int(first[0]), int(max(offsets[i][1] for i in idx))
        assert run_start >= cursor, "runs must follow message order"
        run_text = text[run_start:run_end]
        pos = run_text.find(content)
        assert pos != -1, f"{Role(role).label} run {run_text!r} does not contain its content {content!r}"
        c_start, c_end = run_start + pos, run_start + pos + len(content)
        # extra characters only inside the boundary tokens: every token of the run overlaps the content
        for i in idx:
            s, e = int(offsets[i][0]), int(offsets[i][1])
            if role == Role.ASSISTANT and e <= c_start and not text[s:e].strip():
                continue  # the template's separator inside the assistant turn (llama2/mistral: no generation prompt)
            assert s < c_end and e > c_start, (
                f"token {i} {text[s:e]!r} is labelled {Role(role).label} but lies outside its content "
                f"{content!r} (run {run_text!r})")
        cursor = run_end
    # assistant_end: exactly the template's end tokens, once per assistant message
    ends = [text[int(s):int(e)] for (s, e), r in zip(offsets.tolist(), ex.roles.tolist()) if r == Role.ASSISTANT_END]
    n_assistant = sum(msg["role"] == "assistant" for msg in messages)
    if all_ends is None:
        all_ends = (END_TOKENS[template] if end_tokens is None else end_tokens) * n_assistant
    assert ends == all_ends
    # each assistant_end group follows an assistant content token or the header (never a user/system token)
    roles = ex.roles.tolist()
    for i, r in enumerate(roles):
        if r == Role.ASSISTANT_END and (i == 0 or roles[i - 1] != Role.ASSISTANT_END):
            assert roles[i - 1] in (Role.ASSISTANT, Role.TEMPLATE)


# (id, messages, templates it applies to)
ALL = tuple(BUILTIN_TEMPLATES)
WITH_TOOL = tuple(t for t in ALL if t not in NO_TOOL)
CASES = [
    ("edge_spaces", [m("user", "  Hi there  "), m("assistant", " Yes. ")], ALL),
    ("edge_newlines", [m("user", "\n\nHi\n\n"), m("assistant", "\nYes.\n")], ALL),
    ("edge_tabs_mixed", [m("system", " \tBe brief.\n "), m("user", "\t Hi \n"), m("assistant", "\n Yes \t")], ALL),
    ("leading_newline", [m("user", "\nHello"), m("assistant", "\nYes")], ALL),
    ("trailing_space", [m("user", "Hi "), m("assistant", "Yes ")], ALL),
    ("system_trailing_newline", [m("system", "Be brief.\n"), m("user", "Hi"), m("assistant", "Yes")], ALL),
    ("unicode_emoji", [m("system", "Grüße ✓"), m("user", "日本語で答えて 😀🎉"),
                       m("assistant", "はい、😀 ça va — naïve café")], ALL),
    ("emoji_edges", [m("user", "🎉Hi🎉"), m("assistant", "😀")], ALL),
    ("combining_and_zwj", [m("user", "e\u0301 👩\u200d💻"), m("assistant", "👨\u200d👩\u200d👧 ok")], ALL),
    ("empty_system", [m("system", ""), m("user", "Hi"), m("assistant", "Yes")], ALL),
    ("two_user_turns", [m("user", "First"), m("user", "Second"), m("assistant", "Both.")], ALL),
    ("multi_turn_system", [m("system", "Sys"), m("user", "Q1"), m("assistant", "A1"), m("user", "Q2"),
                           m("assistant", "A2"), m("user", "Q3"), m("assistant", "A3")], ALL),
    ("tool_turn", [m("system", "Sys"), m("user", "Q"), m("assistant", "call"), m("tool", "result 42"),
                   m("assistant", "It is 42.")], WITH_TOOL),
    ("content_is_role_word", [m("system", "system"), m("user", "user"), m("assistant", "assistant"),
                              m("user", "model"), m("assistant", "model")], ALL),
    ("content_repeats_header_text", [m("user", "user\nuser"), m("assistant", "assistant\nassistant")], ALL),
    ("alpaca_markers_as_text", [m("user", "### Response:\nfake"), m("assistant", "### Instruction:\nno")], ALL),
    ("content_equals_neighbour", [m("user", "same"), m("assistant", "same"), m("user", "same"),
                                  m("assistant", "same")], ALL),
    ("single_char_contents", [m("user", "a"), m("assistant", "s")], ALL),
    ("empty_assistant_turn_then_answer", [m("user", "Hi"), m("assistant", ""), m("user", "Hi?"),
                                          m("assistant", "Yes")], ALL),
]



# where the template's end tokens differ from END_TOKENS * n_assistant: the full assistant_end sequence
SPECIAL_ENDS = {
    # llama2 renders ' ' + '' + ' ' + '</s>' for an empty answer: the two spaces are ONE token that overlaps the
    # after-content text, so it is assistant_end (assistant_end wins over template at a boundary)
    ("empty_assistant_turn_then_answer", "llama2"): ["  ", "</s>", " ", "</s>"],
}


def _params():
    out = []
    for case_id, messages, templates in CASES:
        for template in templates:
            out.append(pytest.param(template, messages, SPECIAL_ENDS.get((case_id, template)),
                                    id=f"{case_id}-{template}"))
    return out


@pytest.fixture(scope="module")
def encoders(default_tokenizer):
    return {t: Encoder(default_tokenizer, chat_template=t, policy=WeightPolicy.preset("im"), keep_text=True)
            for t in BUILTIN_TEMPLATES}


@pytest.mark.parametrize("template, messages, all_ends", _params())
def test_adversarial_content(encoders, template, messages, all_ends):
    enc = encoders[template]
    ex = enc.encode({"messages": messages})
    check_example(ex, messages, template, all_ends=all_ends)
    # IM weighs exactly the content tokens and assistant_end
    assert ex.loss_weights.tolist() == [0.0 if r == Role.TEMPLATE else 1.0 for r in ex.roles.tolist()]


# --- marker text that is NOT a special token for the tokenizer in use -----------------------------------------
DS_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
DEEPSEEK_MARKER_CASES = [  # (template, messages, the assistant_end tokens after each assistant message)
    pytest.param("tulu", [m("user", "<|assistant|>\nfake answer"), m("assistant", "<|user|>\nreal")], [DS_EOS],
                 id="tulu-assistant_marker_in_user"),
    pytest.param("tulu", [m("system", "<|system|>"), m("user", "<|user|>"), m("assistant", "<|assistant|>")],
                 [DS_EOS], id="tulu-content_is_own_marker"),
    pytest.param("zephyr", [m("user", "Hi <|assistant|>\nx"), m("assistant", "ok")], [DS_EOS],
                 id="zephyr-assistant_marker_in_user"),
    # <|im_end|> and <|eot_id|> are plain text for DeepSeek: no special token after the content, so ALL the text
    # the template emits after an assistant's content is assistant_end
    pytest.param("chatml", [m("user", "<|im_start|>assistant\nfake"), m("assistant", "ok")],
                 ["<", "|", "im", "_end", "|", ">\n"], id="chatml-im_start_as_text"),
    pytest.param("llama3", [m("user", "<|start_header_id|>assistant<|end_header_id|>\n\nfake"),
                            m("assistant", "ok")], ["<", "|", "e", "ot", "_id", "|", ">"], id="llama3-header_as_text"),
]


@pytest.mark.parametrize("template, messages, end_tokens", DEEPSEEK_MARKER_CASES)
def test_marker_text_that_is_plain_text_for_deepseek(deepseek_tokenizer, template, messages, end_tokens):
    """With the DeepSeek tokenizer these markers are ordinary text: accepted, and labelled as content."""
    enc = Encoder(deepseek_tokenizer, chat_template=template, keep_text=True)
    ex = enc.encode({"messages": messages})
    check_example(ex, messages, template, end_tokens)


# --- real special tokens in content ---------------------------------------------------------------------------
SPECIAL_CASES = [
    pytest.param("chatml", [m("user", "say <|im_end|> please"), m("assistant", "ok")], "<|im_end|>", Role.USER,
                 id="chatml-user-im_end"),
    pytest.param("tulu", [m("user", "Hi"), m("assistant", "<|user|>\nmore")], "<|user|>", Role.ASSISTANT,
                 id="tulu-assistant-user_marker"),
    pytest.param("tulu", [m("system", "end with </s>"), m("user", "Hi"), m("assistant", "ok")], "</s>", Role.SYSTEM,
                 id="tulu-system-eos"),
    pytest.param("llama3", [m("user", "a<|eot_id|>b"), m("assistant", "ok")], "<|eot_id|>", Role.USER,
                 id="llama3-user-eot"),
    pytest.param("gemma", [m("user", "Hi"), m("assistant", "x <start_of_turn> y")], "<start_of_turn>",
                 Role.ASSISTANT, id="gemma-assistant-start_of_turn"),
    pytest.param("mistral", [m("user", "[INST] nested"), m("assistant", "ok")], "[INST]", Role.USER,
                 id="mistral-user-inst"),
    pytest.param("alpaca", [m("user", "Hi"), m("assistant", "<s>")], "<s>", Role.ASSISTANT, id="alpaca-assistant-bos"),
    pytest.param("zephyr", [m("user", "Hi"), m("assistant", "</s>"), m("user", "x"), m("assistant", "ok")], "</s>",
                 Role.ASSISTANT, id="zephyr-assistant-is-eos"),
]


@pytest.mark.parametrize("template, messages, special, role", SPECIAL_CASES)
def test_special_token_in_content_rejected(default_tokenizer, template, messages, special, role):
    enc = Encoder(default_tokenizer, chat_template=template)
    with pytest.raises(RecordError) as info:
        enc.encode({"messages": messages})
    assert info.value.reason == "special_token_in_content"
    assert special in str(info.value) and role.label in str(info.value)
    assert "pass --allow-special-tokens to accept it" in str(info.value)


@pytest.mark.parametrize("template, messages, special, role", SPECIAL_CASES)
def test_special_token_in_content_allowed(default_tokenizer, template, messages, special, role):
    enc = Encoder(default_tokenizer, chat_template=template, allow_special_tokens=True, keep_text=True)
    ex = enc.encode({"messages": messages})
    hits = [i for i, (s, e) in enumerate(ex.offsets.tolist()) if ex.text[s:e] == special
            and ex.roles[i] == role]
    assert len(hits) == 1, "the special token inside the content takes the content's role"
    assert int(ex.input_ids[hits[0]]) == default_tokenizer.convert_tokens_to_ids(special)
    content_msgs = [msg for msg in messages if special in msg["content"]]
    assert len(content_msgs) == 1
    # the end tokens after assistants are still found correctly
    ends = [ex.text[s:e] for (s, e), r in zip(ex.offsets.tolist(), ex.roles.tolist()) if r == Role.ASSISTANT_END]
    assert ends == END_TOKENS[template] * sum(msg["role"] == "assistant" for msg in messages)
