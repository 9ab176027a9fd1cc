"""The reference for `tuneguard score`, from transformers + PEFT.

Loads a HuggingFace model directory with transformers (f32, eager attention), scores every
conversation of a chat JSONL file under the base model, then applies each PEFT adapter with
`peft.PeftModel.from_pretrained` (more with `load_adapter`) and scores them again under it.
It prints what `tuneguard score --model M --adapter NAME=DIR --data F` prints, one JSON line
per (example, model) in the same order, with the same fields:

    {"index": 0, "model": "base" | NAME, "nll": <answer-only mean NLL, nats, or null>,
     "answer_tokens": <n>, "truncated": <bool>, "token_logprobs": [...]}

`token_logprobs` (log P of each answer token, in order) is extra: `score` prints only their
negated mean, `nll`. Tokenization is the engine's (trainer/src/chat.rs `encode_chat`): the
model's chat template (`chat_template` of tokenizer_config.json or chat_template.jinja; Qwen
ChatML when there is none), no special tokens added, answer mask = the tokens overlapping an
assistant message's content plus the end-of-turn token (`eos_token`, else `<|im_end|>`) right
after it, cut from the right to `--max-len` tokens. Log-probs are a log-softmax in f32 of the
logits of the position before each answer token; `nll` their negated mean in f64, as
trainer/src/score.rs `mean_nll`.

integration/test_local_training.py runs it on the adapter a tenant downloads from
`GET /v1/tuneguard/jobs/{id}/adapter` and compares it with `tuneguard score`. Needs the reference
venv (scripts/setup-reference-venv.sh); the GGUF models are not supported (HF directories only).

Usage: .refvenv/bin/python trainer/reference/peft_logits.py --model trainer/tests/fixtures/tiny_tied \
           --adapter ft=path/to/adapter --data chats.jsonl [--max-len 2048] [--output out.jsonl]
"""
import argparse
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel

# trainer/src/chat.rs CHATML_TEMPLATE: the template when the model ships none.
CHATML_TEMPLATE = (
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + message.content"
    " + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def load_tokenizer(model_dir):
    tok = AutoTokenizer.from_pretrained(model_dir)
    template = tok.chat_template
    if template is None:
        jinja = os.path.join(model_dir, "chat_template.jinja")
        template = open(jinja).read() if os.path.exists(jinja) else CHATML_TEMPLATE
    eos = tok.eos_token if isinstance(tok.eos_token, str) else "<|im_end|>"
    return tok, template, eos


def encode_chat(tok, template, eos, messages, max_len):
    """(ids, answer mask, truncated), as trainer/src/chat.rs `encode_chat`."""
    render = lambda msgs, gen: tok.apply_chat_template(  # noqa: E731
        msgs, chat_template=template, tokenize=False, add_generation_prompt=gen)
    text = render(messages, False)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = render(messages[:i], True)
        start = len(prefix)
        if not (text.startswith(prefix) and text[start:].startswith(m["content"])):
            raise SystemExit(f"message {i}: the template does not render the assistant content "
                             "right after the generation prompt")
        end = start + len(m["content"])
        if text[end:].startswith(eos):
            end += len(eos)
        spans.append((start, end))
    # Character offsets here, byte offsets in the engine: both index the same rendered text.
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    mask = [any(s < b and e > a for (a, b) in spans) for (s, e) in enc["offset_mapping"]]
    truncated = max_len is not None and len(ids) > max_len
    if max_len is not None:
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask, truncated


def answer_logprobs(model, ids, mask):
    """log P(ids[t] | ids[:t]) for t >= 1 with mask[t], log-softmax in f32."""
    picks = [t for t in range(1, len(ids)) if mask[t]]
    if not picks:
        return []
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [lp[t - 1, ids[t]].item() for t in picks]


def line(index, name, lps, truncated):
    nll = -sum(lps) / len(lps) if lps else None
    return {"index": index, "model": name, "nll": nll, "answer_tokens": len(lps),
            "truncated": truncated, "token_logprobs": lps}


def parse_adapter(spec):
    name, sep, path = spec.partition("=")
    return (name, path) if sep else ("adapter", spec)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="HuggingFace model directory")
    ap.add_argument("--adapter", action="append", default=[], type=parse_adapter,
                    help="PEFT adapter directory, as NAME=DIR or DIR (name `adapter`); repeatable")
    ap.add_argument("--data", required=True, help='JSONL file of {"messages": [...]} conversations')
    ap.add_argument("--max-len", type=int, default=2048, help="truncate to this many tokens")
    ap.add_argument("--output", help="output JSONL (stdout when absent)")
    a = ap.parse_args()
    if len({n for n, _ in a.adapter}) != len(a.adapter):
        ap.error("adapter names must differ")

    torch.manual_seed(0)
    tok, template, eos = load_tokenizer(a.model)
    examples = []
    with open(a.data) as f:
        for i, raw in enumerate(f):
            if not raw.strip():
                raise SystemExit(f"{a.data}:{i + 1}: empty line")
            examples.append(encode_chat(tok, template, eos, json.loads(raw)["messages"], a.max_len))

    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32,
                                                attn_implementation="eager").eval()
    scores = {"base": [answer_logprobs(base, ids, m) for ids, m, _ in examples]}
    model = None
    for name, path in a.adapter:
        if model is None:
            model = PeftModel.from_pretrained(base, path, adapter_name=name).eval()
        else:
            model.load_adapter(path, adapter_name=name)
        model.set_adapter(name)
        scores[name] = [answer_logprobs(model, ids, m) for ids, m, _ in examples]

    out = open(a.output, "w") if a.output else sys.stdout
    for k, (_, _, truncated) in enumerate(examples):
        for name in scores:
            out.write(json.dumps(line(k, name, scores[name][k], truncated)) + "\n")
    out.flush()


if __name__ == "__main__":
    main()
