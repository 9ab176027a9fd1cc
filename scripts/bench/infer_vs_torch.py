#!/usr/bin/env python3
"""SmolLM2-135M-Instruct inference, tuneguard's engine against transformers, side by side in one
run (issue 11, item 7): model load time and peak RSS (the GGUF file, and the safetensors
directory transformers converts it to), answer-scoring tokens/s, and greedy generation tokens/s
at batch 1 and 16. f32 on the CPU, 2 threads each, one after the other.

Usage: .refvenv/bin/python scripts/bench/infer_vs_torch.py [--quick] [--bin target/release/tuneguard]
  needs: scripts/fetch-model.sh (the GGUF), scripts/setup-reference-venv.sh (this python),
  a release build. The converted directory is cached in models/SmolLM2-135M-Instruct-f32/.
Prints one JSON object. The engine's side runs the `tuneguard score` / `generate` commands and
reads their own timing lines (load, then the work alone); torch's side times the same work
in-process; peak RSS of a load is a fresh process's, from /usr/bin/time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GGUF = ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"
HF = ROOT / "models" / "SmolLM2-135M-Instruct-f32"
THREADS = 2


def chats(n: int, words: int) -> list[list[dict]]:
    rnd = random.Random(0)
    vocab = "the model learns to answer questions about gardens rivers numbers music and bread carefully".split()
    return [[{"role": "user", "content": f"Tell me something, number {i}."},
             {"role": "assistant", "content": " ".join(rnd.choice(vocab) for _ in range(words))}]
            for i in range(n)]


PROMPTS = ["What is the capital of France?", "Give me three tips for sleeping better.",
           "Explain photosynthesis simply.", "Write a haiku about rain.",
           "How do I boil an egg?", "What is 17 times 3?", "Name a few uses of vinegar.",
           "Why is the sky blue?", "Suggest a name for a cat.", "What is a prime number?",
           "How do plants drink water?", "Tell me a fun fact about octopuses.",
           "What should I pack for a picnic?", "How does a bicycle stay upright?",
           "What is the tallest mountain?", "Describe a rainbow in one sentence."]


def timed(cmd: list[str]) -> tuple[float, int, str, str]:
    """Wall seconds, peak RSS (MB), stdout and stderr of a command."""
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"{cmd[:3]} failed: {p.stderr[-2000:]}")
    rss_kb = int(p.stderr.strip().splitlines()[-1])
    return wall, rss_kb // 1024, p.stdout, p.stderr


def reported(stderr: str, pattern: str) -> tuple[float, ...]:
    """The numbers of the engine's own timing line matching `pattern` (see `tuneguard score`)."""
    import re
    for line in stderr.splitlines():
        if m := re.search(pattern, line):
            return tuple(float(g) for g in m.groups())
    sys.exit(f"no timing line /{pattern}/ in: {stderr[-1000:]}")


def convert() -> None:
    if (HF / "config.json").exists():
        return
    from transformers import AutoModelForCausalLM, AutoTokenizer
    print(f"== converting {GGUF.name} -> {HF} (transformers, f32)", file=sys.stderr)
    m = AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype="float32")
    t = AutoTokenizer.from_pretrained(GGUF.parent, gguf_file=GGUF.name)
    # transformers will not save_pretrained a GGUF-loaded model: its dequantized f32 tensors are
    # written as a plain safetensors checkpoint, with its config (minus the GGUF origin).
    from safetensors.torch import save_file
    HF.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in m.state_dict().items()}
    if m.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, str(HF / "model.safetensors"), metadata={"format": "pt"})
    if hasattr(m.config, "quantization_config"):
        del m.config.quantization_config
    m.config.save_pretrained(HF)
    t.save_pretrained(HF)


def torch_load(path: Path) -> dict:
    """Load time and peak RSS of a fresh process loading `path` with transformers."""
    code = f"""
import time, torch
torch.set_num_threads({THREADS})
from transformers import AutoModelForCausalLM
t = time.perf_counter()
{"AutoModelForCausalLM.from_pretrained(%r, gguf_file=%r, dtype='float32')" % (str(path.parent), path.name) if path.suffix == ".gguf" else "AutoModelForCausalLM.from_pretrained(%r, dtype='float32')" % str(path)}
print(time.perf_counter() - t)
"""
    # Peak RSS through /usr/bin/time: a child forked from this (large) process would start
    # with its parent's high-water mark in ru_maxrss.
    _, rss, stdout, _ = timed([sys.executable, "-c", code])
    return {"load_s": round(float(stdout.split()[-1]), 2), "peak_rss_mb": rss}


def engine_side(binary: str, data: Path, one: Path, batch_prompts: dict[int, list[str]],
                new_tokens: int) -> dict:
    """The engine's own timings (its stderr lines): load, then the work alone."""
    out: dict = {}
    for name, model in (("gguf", GGUF), ("safetensors_dir", HF)):
        _, rss, _, err = timed([binary, "score", "--model", str(model), "--data", str(one)])
        out[f"load_{name}"] = {"load_s": reported(err, r"loaded in ([0-9.]+) s")[0], "peak_rss_mb": rss}
    _, rss, stdout, err = timed([binary, "score", "--model", str(GGUF), "--data", str(data)])
    tokens, secs = reported(err, r"scored (\d+) tokens in ([0-9.]+) s")
    out["score"] = {"tokens": int(tokens), "seconds": secs, "peak_rss_mb": rss}
    for b, prompts in batch_prompts.items():
        args = [binary, "generate", "--model", str(GGUF), "--max-new-tokens", str(new_tokens)]
        for p in prompts:
            args += ["--prompt", p]
        _, _, stdout, err = timed(args)
        # Tokens until the end of turn, as counted on the torch side.
        toks = sum(min(json.loads(l)["tokens"], new_tokens) for l in stdout.splitlines() if l.strip())
        secs = reported(err, r"base: generated \d+ tokens for \d+ prompts in ([0-9.]+) s")[0]
        out[f"generate_batch_{b}"] = {"tokens": toks, "seconds": secs, "tokens_per_s": round(toks / secs, 1)}
    return out


def torch_side(convs: list[list[dict]], batch_prompts: dict[int, list[str]], new_tokens: int) -> tuple[dict, int]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(THREADS)
    tok = AutoTokenizer.from_pretrained(HF)
    model = AutoModelForCausalLM.from_pretrained(HF, dtype=torch.float32, attn_implementation="eager").eval()
    out: dict = {}
    seqs = [tok.apply_chat_template(c, tokenize=True) for c in convs]
    seqs = [list(s["input_ids"]) if hasattr(s, "keys") else list(s) for s in seqs]
    n_tokens = sum(len(s) for s in seqs)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(seqs), 16):  # the engine's scoring batch (16 rows per pass)
            chunk = seqs[i:i + 16]
            width = max(len(s) for s in chunk)
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in chunk])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in chunk])
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            lp = torch.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None])
            lp.sum().item()
    out["score"] = {"seconds": round(time.perf_counter() - t, 2)}
    tok.padding_side = "left"
    eos = tok.eos_token_id
    for b, prompts in batch_prompts.items():
        texts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                         add_generation_prompt=True) for p in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        t = time.perf_counter()
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad)
        secs = time.perf_counter() - t
        new = gen[:, enc["input_ids"].shape[1]:].tolist()
        toks = sum(next((i + 1 for i, x in enumerate(row) if x == eos), len(row)) for row in new)
        out[f"generate_batch_{b}"] = {"tokens": toks, "seconds": round(secs, 2),
                                      "tokens_per_s": round(toks / secs, 1)}
    out["peak_rss_mb_after_all"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return out, n_tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="8 chats, 16 new tokens")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "tuneguard"))
    a = ap.parse_args()
    if not GGUF.exists():
        sys.exit("no model: run scripts/fetch-model.sh")
    convert()
    n, words, new_tokens = (8, 40, 16) if a.quick else (32, 150, 48)
    convs = chats(n, words)
    # Batch 1: a prompt whose reply runs to the token limit (a short reply would time noise).
    batch_prompts = {1: ["Write a long story about a lighthouse keeper and a storm."], 16: PROMPTS[:16]}
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        data, one = work / "data.jsonl", work / "one.jsonl"
        data.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
        one.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                {"role": "assistant", "content": "Hello."}]}) + "\n")
        engine = engine_side(a.bin, data, one, batch_prompts, new_tokens)
    loads = {"load_gguf": torch_load(GGUF), "load_safetensors_dir": torch_load(HF)}
    torch_out, n_tokens = torch_side(convs, batch_prompts, new_tokens)
    torch_out.update(loads)
    for side in (engine, torch_out):
        side["score"]["tokens_per_s"] = round(n_tokens / side["score"]["seconds"], 1)
    print(json.dumps({"date": time.strftime("%Y-%m-%d"), "threads": THREADS, "chats": n,
                      "scored_tokens": n_tokens, "new_tokens": new_tokens,
                      "tuneguard": engine, "transformers": torch_out}, indent=1))


if __name__ == "__main__":
    main()
