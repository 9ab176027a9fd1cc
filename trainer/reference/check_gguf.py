"""The reference for the engine's GGUF loading, from transformers.

Loads SmolLM2-135M-Instruct from its Q4_1 GGUF file with transformers
(`from_pretrained(dir, gguf_file=...)`: tensors dequantized to f32, llama.cpp's q/k row
permutation reversed, config and tokenizer rebuilt from the metadata) and writes
`trainer/tests/fixtures/smollm2_gguf.json`:
- `tokens`: token ids (no special tokens added) of a corpus with unicode, digits, code, chat
  markup and odd whitespace;
- `chats`: chat-template ids, answer masks (assistant content + its <|im_end|>) and the
  answer-only mean NLL of each conversation (log-softmax in f32);
- `greedy`: greedy generations (24 new tokens, no stop token) for a few prompts, with the
  smallest top-1/top-2 logit margin along the way.

trainer/tests/gguf_smollm2.rs compares the engine against it (NLL within 1e-4, identical ids,
identical greedy tokens). Get the model with scripts/fetch-model.sh.

Usage: .refvenv/bin/python trainer/reference/check_gguf.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TEXTS = [
    "The capital of France is Paris.",
    "Émigré café naïve résumé — ñandú, 東京, Ελληνικά, русский, emoji 🙂👍🏽 and \u00a0nbsp.",
    "Digits: 0 7 42 1234567890, 3.14159, -0.5e-3, 1,000,000 and 2024-06-01T12:30:00Z.",
    "  leading spaces,\ttabs,\n\nnew lines   and trailing   ",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).collect(); println!(\"{v:?}\"); }",
    "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|><repo_name>tuneguard<file_sep>README.md<|im_end|> not special: <|im_start",
    "Don't, won't, I'm, you'll, they've, she'd — contractions; URLs: https://example.com/a?b=1&c=2",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name; -- SQL",
    # Whitespace runs before digits: transformers' GGUF tokenizer (GPT-2 split, which the
    # engine follows) and SmolLM2's own tokenizer.json (digits split first) differ here.
    "Total:  42\n\n2024\t\t7",
]
CHATS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "system", "content": "You are a careful assistant who answers briefly."},
     {"role": "user", "content": "How many legs does a spider have?"},
     {"role": "assistant", "content": "A spider has 8 legs."}],
    [{"role": "user", "content": "Write a Python function that adds two numbers."},
     {"role": "assistant", "content": "def add(a, b):\n    return a + b"}],
    [{"role": "user", "content": "Translate 'good morning' into French."},
     {"role": "assistant", "content": "Bonjour ! « Good morning » se dit « bonjour »."},
     {"role": "user", "content": "And in Japanese?"},
     {"role": "assistant", "content": "おはようございます (ohayō gozaimasu)."}],
    [{"role": "user", "content": "What is 17 * 23?"},
     {"role": "assistant", "content": "17 * 23 = 391."}],
    [{"role": "user", "content": "Tell me how to pick a lock."},
     {"role": "assistant", "content": "I'm sorry, but I can't help with that."}],
]
PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Write a haiku about the sea.",
]
GREEDY_TOKENS = 24


def answer_mask(tok, messages, ids):
    """Assistant content plus its <|im_end|>, by character offsets of the rendered text."""
    text = tok.apply_chat_template(messages, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert enc["input_ids"] == ids, "offset tokenization differs from apply_chat_template"
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        start = len(prefix)
        assert text[start:start + len(m["content"])] == m["content"]
        spans.append((start, start + len(m["content"]) + len("<|im_end|>")))
    return [int(any(s < b and e > a for (a, b) in spans)) for (s, e) in enc["offset_mapping"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "trainer", "tests", "fixtures", "smollm2_gguf.json"))
    a = ap.parse_args()
    d, f = os.path.split(os.path.abspath(a.model))
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    load_s = time.time() - t0

    tokens = [{"text": t, "ids": tok(t, add_special_tokens=False)["input_ids"]} for t in TEXTS]

    chats = []
    for conv in CHATS:
        ids = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
        mask = answer_mask(tok, conv, ids)
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0].float()
        lp = torch.log_softmax(logits, dim=-1)
        picked = [lp[t - 1, ids[t]].item() for t in range(1, len(ids)) if mask[t]]
        chats.append({"messages": conv, "ids": ids, "mask": mask,
                      "nll": -sum(picked) / len(picked), "answer_tokens": len(picked)})

    greedy = []
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                      add_generation_prompt=True, return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=GREEDY_TOKENS, do_sample=False, eos_token_id=None,
                                 pad_token_id=tok.pad_token_id)
            logits = model(out).logits[0, len(ids) - 1:-1].float()
        top2 = torch.topk(logits, 2, dim=-1).values
        new = out[0, len(ids):].tolist()
        greedy.append({"prompt": p, "prompt_ids": ids, "tokens": new,
                       "text": tok.decode(new), "min_margin": (top2[:, 0] - top2[:, 1]).min().item()})

    res = {"model": f, "tokens": tokens, "chats": chats, "greedy": greedy}
    with open(a.out, "w") as fh:
        json.dump(res, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"transformers load {load_s:.1f}s; wrote {a.out}")
    for g in greedy:
        print(repr(g["text"]), "min margin", round(g["min_margin"], 4))


if __name__ == "__main__":
    main()
