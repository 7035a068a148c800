"""Agreement with transformers' own assistant mask.

Templates with ``{% generation %}`` blocks around the assistant content AND its end-of-turn token make
``apply_chat_template(..., return_assistant_tokens_mask=True)`` mark exactly the tokens our spec calls
``assistant`` + ``assistant_end`` (the templates render the generation prompt, as real ones do: the spec's output
starts after it). Our encoder gets the same template as a Jinja file and must agree token by token.
"""

from __future__ import annotations

import pytest

from im_data import Encoder, WeightPolicy
from im_data.roles import OUTPUT_SIDE_ROLES, Role

CHATML_GEN = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|im_start|>assistant\\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)
TULU_GEN = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{ '<|assistant|>\\n' }}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ '\\n' }}"
    "{%- else -%}"
    "{{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
)
LLAMA3_GEN = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}"
    "{%- if message['role'] == 'assistant' -%}"
    "{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{%- else -%}"
    "{{ message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif -%}"
)
TEMPLATES = {"chatml_gen": CHATML_GEN, "tulu_gen": TULU_GEN, "llama3_gen": LLAMA3_GEN}


def m(role, content):
    return {"role": role, "content": content}


CONVERSATIONS = {
    "single": [m("user", "Hi there"), m("assistant", "Hello!")],
    "system_multi_turn": [m("system", "Be brief."), m("user", "Q1?"), m("assistant", "A1."), m("user", "Q2?"),
                          m("assistant", "A2, longer answer with words."), m("user", "Q3"), m("assistant", "A3")],
    "unicode": [m("user", "Grüße 世界 😀?"), m("assistant", "こんにちは 👩\u200d💻 ça va — naïve"),
                m("user", "🎉"), m("assistant", "🇫🇷 e\u0301")],
    "role_words": [m("user", "assistant"), m("assistant", "user assistant"), m("user", "user"),
                   m("assistant", "assistant")],
    "code_and_newlines": [m("user", "Write code:"), m("assistant", "```python\nfor i in range(3):\n    print(i)\n```"),
                          m("user", "Thanks\n"), m("assistant", "You're welcome.\n\nBye.")],
    "tool_turn": [m("user", "Weather?"), m("assistant", "calling"), m("tool", "sunny, 21C"), m("assistant", "Sunny.")],
}


@pytest.mark.parametrize("conv_id", sorted(CONVERSATIONS))
@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_assistant_roles_match_hf_assistant_mask(default_tokenizer, tmp_path, template_id, conv_id):
    source = TEMPLATES[template_id]
    messages = CONVERSATIONS[conv_id]
    path = tmp_path / f"{template_id}.jinja"
    path.write_text(source, encoding="utf-8")
    hf = default_tokenizer.apply_chat_template(messages, chat_template=source, tokenize=True, return_dict=True,
                                               return_assistant_tokens_mask=True)
    enc = Encoder(default_tokenizer, chat_template=str(path), policy=WeightPolicy.preset("it"))
    ex = enc.encode({"messages": messages})
    assert ex.input_ids.tolist() == list(hf["input_ids"])
    ours = [1 if r in OUTPUT_SIDE_ROLES else 0 for r in ex.roles.tolist()]
    assert ours == list(hf["assistant_masks"])
    assert sum(ours) > 0
    # under IT our loss weights are that mask
    assert ex.loss_weights.tolist() == [float(x) for x in hf["assistant_masks"]]
    # and the masked span of every assistant turn ends with exactly one assistant_end special token
    ends = [enc.tokens([i])[0] for i, r in zip(ex.input_ids.tolist(), ex.roles.tolist()) if r == Role.ASSISTANT_END]
    end_token = {"chatml_gen": "<|im_end|>", "tulu_gen": "</s>", "llama3_gen": "<|eot_id|>"}[template_id]
    assert ends == [end_token] * sum(x["role"] == "assistant" for x in messages)


def test_hf_mask_is_not_trivially_equal(default_tokenizer):
    """Guard: the HF mask marks some but not all tokens (the comparison above is not vacuous)."""
    messages = CONVERSATIONS["single"]
    hf = default_tokenizer.apply_chat_template(messages, chat_template=CHATML_GEN, tokenize=True, return_dict=True,
                                               return_assistant_tokens_mask=True)
    assert 0 < sum(hf["assistant_masks"]) < len(hf["input_ids"])
