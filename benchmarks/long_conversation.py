"""Span finding is linear in the conversation length: encode one 20,000-message conversation.

    python benchmarks/long_conversation.py [--messages 20000] [--template chatml] [--repeat 3]

Prints, for 1/4, 1/2 and all of the messages (so the growth can be read off), the time of the first encode
(skeleton build: three renders) and of a repeat (cached skeleton: one render), and the repeat's stages: prepare
(read the record, render, find spans), tokenize (one call of the Rust tokenizer on the whole text) and complete
(roles, weights, counts). Target: under 5 s for 20,000 messages.
"""

from __future__ import annotations

import argparse
import time

from im_data import Encoder, load_tokenizer


def conversation(n: int) -> dict:
    messages = [{"role": "system", "content": "Be brief."}]
    for k in range((n - 1) // 2):
        messages.append({"role": "user", "content": f"Question {k}: what is {k} plus {k}?"})
        messages.append({"role": "assistant", "content": f"{k} plus {k} is {2 * k}."})
    return {"messages": messages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--template", default="chatml")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tok = load_tokenizer(None)
    for n in (args.messages // 4, args.messages // 2, args.messages):
        record = conversation(n)
        enc = Encoder(tok, chat_template=args.template)
        t0 = time.perf_counter()
        ex = enc.encode(record)
        first = time.perf_counter() - t0
        again = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            prepared = enc.prepare([record])
            t1 = time.perf_counter()
            encodings = enc.tokenize(prepared)
            t2 = time.perf_counter()
            enc.complete(prepared, encodings)
            t3 = time.perf_counter()
            again.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2))
        total, prep, tok_s, comp = min(again)
        print(f"{len(record['messages']):>7} messages, {len(ex):>8} tokens: first encode {first:6.2f} s, "
              f"cached {total:6.2f} s (prepare {prep:5.2f} s, tokenize {tok_s:5.2f} s, complete {comp:5.2f} s)")


if __name__ == "__main__":
    main()
