"""Build the embedded default tokenizer (``im_data/assets/tokenizer``) -- reproducibly and offline.

Run from anywhere: ``python scripts/build_default_tokenizer.py``.

A byte-level BPE (HF ``tokenizers``) trained on text we wrote ourselves:

* the message contents of ``im_data/assets/sample.jsonl``,
* the string values of the test format samples ``tests/data/sample_*.jsonl``,
* a built-in list of common English words and code snippets (below), so ordinary text tokenises sensibly.

Design points:

* ByteLevel pre-tokenizer with ``add_prefix_space=False`` and ``trim_offsets=False`` and a ByteLevel
  decoder: every string round-trips, and character offsets are exact (no whitespace trimming).
* No post-processor: the tokenizer never adds BOS/EOS itself; chat templates do.
* Special tokens (ids 0..16, in this order) are added as *special* tokens, so ``<|user|>`` or ``</s>`` in a
  rendered template stay single tokens.
* Deterministic: inputs are read in a fixed order and training runs single-threaded on a fixed sequence,
  so the same input files give a byte-identical ``tokenizer.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

# Training must not depend on thread scheduling; set before importing tokenizers.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("RAYON_RS_NUM_CPUS", "1")

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "im_data" / "assets"
OUT_DIR = ASSETS / "tokenizer"
SAMPLE = ASSETS / "sample.jsonl"
TEST_SAMPLES = [
    REPO / "tests" / "data" / "sample_alpaca.jsonl",
    REPO / "tests" / "data" / "sample_sharegpt.jsonl",
    REPO / "tests" / "data" / "sample_prompt_completion.jsonl",
]
TULU_TEMPLATE_FILE = REPO / "im_data" / "templates" / "tulu.jinja"

VOCAB_SIZE = 4096
MIN_FREQUENCY = 2
MODEL_MAX_LENGTH = 4096

SPECIAL_TOKENS = [
    "<unk>", "<s>", "</s>", "<pad>",
    "<|system|>", "<|user|>", "<|assistant|>",
    "<|im_start|>", "<|im_end|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
    "<start_of_turn>", "<end_of_turn>",
    "[INST]", "[/INST]",
]

TULU_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{%- elif message['role'] == 'assistant' -%}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}"
    "{%- elif message['role'] == 'tool' -%}{{ '<|tool|>\\n' + message['content'] + '\\n' }}"
    "{%- endif -%}"
    "{%- if loop.last and add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
    "{%- endfor -%}"
)

# ~200 common English words plus everyday code fragments; repeated in training so they clear min_frequency.
COMMON_WORDS = """
the be to of and a in that have I it for not on with he as you do at this but his by from they we say her
she or an will my one all would there their what so up out if about who get which go me when make can like
time no just him know take people into year your good some could them see other than then now look only
come its over think also back after use two how our work first well way even new want because any these
give day most us is are was were been has had did does done said made went gone going
question answer explain example summary summarise paragraph sentence word text write rewrite translate list
number total average percent price cost hour minute second week month today tomorrow yesterday
please thank thanks hello help sorry yes maybe
water food city school house family friend team project meeting email report data
small large short long easy hard simple important different same next last early late
""".split()

CODE_SNIPPETS = [
    "def main():\n    return 0\n",
    "import os\nimport sys\nimport json\n",
    "from pathlib import Path\n",
    "for i in range(10):\n    print(i)\n",
    "if __name__ == \"__main__\":\n    main()\n",
    "class Config:\n    def __init__(self, name):\n        self.name = name\n",
    "with open(path, encoding=\"utf-8\") as f:\n    data = json.load(f)\n",
    "try:\n    value = int(text)\nexcept ValueError:\n    value = None\n",
    "return [x for x in items if x is not None]\n",
    "result = {key: value for key, value in pairs}\n",
    "self.assertEqual(result, expected)\n",
    "assert len(items) == 3\n",
    "function add(a, b) {\n  return a + b;\n}\n",
    "const items = [];\nlet count = 0;\n",
    "console.log(`value: ${value}`);\n",
    "SELECT id, name FROM users WHERE active = 1 ORDER BY name;\n",
    "#include <stdio.h>\nint main(void) {\n    printf(\"hello\\n\");\n    return 0;\n}\n",
    "git commit -m \"fix\"\ngit push origin main\n",
    "pip install numpy\npython -m pytest -q\n",
    "<div class=\"container\"></div>\n",
    "    # TODO: handle errors\n",
    "x = np.zeros((3, 4), dtype=np.float32)\n",
    "print(f\"{name}: {value:.2f}\")\n",
    "raise ValueError(\"invalid input\")\n",
    "None True False null true false\n",
]

EXTRA_TEXT = [
    "Hello! How can I help you today?",
    "Sure, here is an example:",
    "Let me know if you have any other questions.",
    "The answer is 42.",
    "First, second, third. Finally, in conclusion, however, therefore, for example.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 50% $10 #1 @user (a) [b] {c} <d> a/b a\\b a|b a_b a-b a+b a=b",
    "Café, naïve, résumé, déjà vu, Straße, über, año, São Paulo, Zürich, Ångström.",
    "你好，世界。こんにちは、世界。안녕하세요. 日本語 中文 한국어",
    "Emoji: 😀 🎉 👍 ❤️ 🌱 ☕ 🚀 ✅",
    "  leading spaces, trailing spaces  \n\n\tTabbed line\r\nWindows line end",
]


def _strings(value) -> list[str]:
    """All string leaves of a JSON value, in document order (keys excluded)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _jsonl_texts(path: Path, *, skip_keys: tuple[str, ...] = ()) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            texts.extend(_strings({k: v for k, v in row.items() if k not in skip_keys}))
    return texts


def training_texts() -> list[str]:
    if not SAMPLE.is_file():
        sys.exit(f"missing {SAMPLE}; run scripts/make_sample.py first")
    texts = _jsonl_texts(SAMPLE, skip_keys=("id",))
    for path in TEST_SAMPLES:
        if path.is_file():
            texts.extend(_jsonl_texts(path, skip_keys=("id",)))
        else:
            print(f"warning: {path} not found, skipped", file=sys.stderr)
    builtin = [" ".join(COMMON_WORDS), "\n".join(COMMON_WORDS), *CODE_SNIPPETS, *EXTRA_TEXT]
    texts.extend(builtin * 3)  # repeated so the built-in words and snippets clear min_frequency
    return texts


def build() -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = None
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=MIN_FREQUENCY,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_texts(), trainer=trainer)
    # The Python ByteLevel decoder constructor takes no options; make its serialised settings match the
    # pre-tokenizer (decoding ignores them, but the saved config should not suggest trimming).
    state = json.loads(tok.to_str())
    state["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True}
    state["post_processor"] = None
    tok = Tokenizer.from_str(json.dumps(state))
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i, (name, tok.token_to_id(name))
    return tok


def chat_template() -> str:
    if TULU_TEMPLATE_FILE.is_file():
        return TULU_TEMPLATE_FILE.read_text(encoding="utf-8")
    return TULU_TEMPLATE


def main() -> None:
    from transformers import PreTrainedTokenizerFast

    raw = build()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=MODEL_MAX_LENGTH,
        additional_special_tokens=SPECIAL_TOKENS[4:],
    )
    fast.chat_template = chat_template()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.iterdir():  # no leftovers from earlier builds (e.g. a different transformers)
        if stale.is_file():
            stale.unlink()
    fast.save_pretrained(str(OUT_DIR))
    # transformers 5 installs a pass-through TemplateProcessing post-processor ("$A" / "$A $B", no BOS/EOS)
    # whenever a tokenizer has none, and saves it. Store tokenizer.json without a post-processor, as built;
    # transformers re-creates the same pass-through on load, so encodings are identical either way.
    tok_json = OUT_DIR / "tokenizer.json"
    saved = json.loads(tok_json.read_text(encoding="utf-8"))
    pp = saved.get("post_processor")
    assert pp is None or (pp.get("type") == "TemplateProcessing" and not pp.get("special_tokens")), pp
    saved["post_processor"] = None
    Tokenizer.from_str(json.dumps(saved)).save(str(tok_json), pretty=True)
    digest = hashlib.sha256((OUT_DIR / "tokenizer.json").read_bytes()).hexdigest()
    size = sum(p.stat().st_size for p in OUT_DIR.iterdir())
    print(f"vocab_size={raw.get_vocab_size()} files={sorted(p.name for p in OUT_DIR.iterdir())} "
          f"bytes={size} tokenizer.json sha256={digest}")


if __name__ == "__main__":
    main()
