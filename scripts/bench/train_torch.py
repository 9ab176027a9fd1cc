"""PyTorch side of the training benchmark: transformers + PEFT LoRA on the same model and data
as `tuneguard train`, timed per optimizer step, with the same loss definition (answer-only CE
over the whole window) and AdamW. Prints one JSON line: tokens/s (non-pad tokens per second
over the timed steps) and peak RSS.

Usage: python train_torch.py --gguf FILE --data FILE.jsonl --batch 4 --rank 8 --steps 4
"""
import argparse
import json
import os
import resource
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    d, f = os.path.split(os.path.abspath(a.gguf))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
                                             target_modules="all-linear", use_rslora=True))
    model.train()
    rows = [json.loads(l)["messages"] for l in open(a.data) if l.strip()]
    seqs = [tok.apply_chat_template(m, tokenize=True, return_dict=False) for m in rows]
    seqs = [s["input_ids"] if isinstance(s, dict) else s for s in seqs]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)
    times, tokens = [], []
    for step in range(a.steps + 1):
        batch = [seqs[(step * a.batch + i) % len(seqs)] for i in range(a.batch)]
        n = max(len(s) for s in batch)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = torch.tensor([s + [pad] * (n - len(s)) for s in batch])
        att = torch.tensor([[1] * len(s) + [0] * (n - len(s)) for s in batch])
        labels = ids.masked_fill(att == 0, -100)
        t0 = time.perf_counter()
        out = model(input_ids=ids, attention_mask=att)
        logits = out.logits[:, :-1].float()
        tgt = labels[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                                                 ignore_index=-100, reduction="sum") / (tgt != -100).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()
        dt = time.perf_counter() - t0
        if step > 0:  # the first step warms up
            times.append(dt)
            tokens.append(int(att.sum()))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"side": "torch+peft", "tokens_per_second": sum(tokens) / sum(times),
                      "step_seconds": sum(times) / len(times), "peak_rss_mb": rss_mb,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
