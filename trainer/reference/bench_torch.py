"""CPU scoring benchmark, PyTorch side: builds (once) a random-weight Qwen2.5-0.5B-shaped model
directory and times forward + f32 log-softmax + gather of the targets, as the engine's scoring does.

Usage: python bench_torch.py DIR [--batch 4] [--seq 256] [--iters 3] [--threads 2]
The Rust side: cargo run -p trainer --example bench_score -- DIR 4 256 3
"""
import argparse
import os
import shutil
import time

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM


def build(d):
    if os.path.exists(os.path.join(d, "model.safetensors")):
        return
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                      num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                      rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).to(torch.bfloat16).save_pretrained(d, safe_serialization=True)
    fx = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "tiny_tied")
    for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
        shutil.copy(os.path.join(fx, f), d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    build(a.dir)
    torch.set_num_threads(a.threads)
    model = Qwen2ForCausalLM.from_pretrained(a.dir, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 151936, (a.batch, a.seq), generator=g)
    times = []
    with torch.inference_mode():
        for i in range(a.iters + 1):
            t0 = time.perf_counter()
            logits = model(ids).logits[:, :-1].float()
            lp = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None])
            times.append(time.perf_counter() - t0)
            del logits, lp
    best = min(times[1:])
    print(f"torch: batch {a.batch} seq {a.seq}: best {best:.3f}s, {a.batch * a.seq / best:.1f} tokens/s "
          f"(threads {a.threads}, all {['%.3f' % t for t in times]})")


if __name__ == "__main__":
    main()
