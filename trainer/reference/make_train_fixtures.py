"""Builds the LoRA training fixtures (trainer/tests/fixtures/train/) with PyTorch + PEFT.

From the committed tiny model fixtures/tiny_tied (Qwen2, f32, 2 layers, hidden 32, vocab 320,
tied embeddings) it writes:

- data.jsonl: 12 OpenAI chat fine-tuning examples (with and without a system message; multi-turn
  ones where an earlier assistant message has "weight": 0).
- init_adapter/: a PEFT LoRA adapter (r 4, alpha 8, rsLoRA, all 7 targets), A and B both random
  (normal, std 0.1, seeded), so every LoRA matrix gets a gradient.
- steer.safetensors: one f32 tensor `vectors` [num_layers + 1, hidden] = [3, 32].
- cases/{plain,kl,ldifs,steering}/policy.toml and cases/<case>/expected/ (the adapter after 3
  optimizer steps, saved by PEFT's save_pretrained, plus steps.json: per optimizer step
  {step, lr, loss, ce, kl, ldifs, grad_norm (pre-clip total), tokens (answer tokens in the window)}).

The loop is written out explicitly (float32 for the fixtures), exactly as DESIGN.md "Training,
pinned down" states: examples in file order, micro-batches of 2 right-padded examples, windows of
2 micro-batches = one optimizer step; micro-batch loss = Σ answer-token NLL / n + regularizer part
(n = answer tokens in the window), backward per micro-batch; then torch clip_grad_norm_, torch
AdamW and transformers' linear schedule with 1 warmup step (step 0 has lr 0). max_grad_norm is
chosen so clipping is active on all 3 steps of every case (asserted).

Checks run every time (assertions):
- clipping is active (pre-clip total norm > max_grad_norm) on every step of every case, every
  adapter moved far more than the tolerance, and every regularized case ends far from plain;
- every case is rerun in float64: the f32 fixture must agree with it to < 5e-6 (measured 2.1e-6
  to 3.3e-6: the tiny model is poorly conditioned and Adam's m/sqrt(v) amplifies the rounding of
  small gradient entries, so an f32 implementation should expect differences of this order);
- the plain case in float64 through transformers' Trainer (SequentialSampler, labels -100 outside
  the answer, right-padding collator, default optimizer): the final adapter must equal the
  explicit loop's to <= 1e-8 max abs. Measured with the pinned stack: 1.4e-17. Trainer counts
  num_items_in_batch over the whole accumulation window (labels[..., 1:] != -100) and divides the
  summed CE by it without dividing by the accumulation steps, as the loop does. One detail: the
  model's own loss (ForCausalLMLoss) upcasts logits with `.float()`, which in a float64 run rounds
  them to f32 (that path differs by ~1e-7), so the checked Trainer gets a `compute_loss_func` with
  the same sum-CE / num_items_in_batch reduction minus that cast; both are run and printed.

The Rust test (`tuneguard train --model tiny_tied --data data.jsonl --policy
cases/<case>/policy.toml --init-adapter init_adapter --max-steps 3`) compares every A and B with
expected/adapter_model.safetensors within 2e-5 max abs.

Usage: python make_train_fixtures.py [--fixtures trainer/tests/fixtures] [--skip-trainer-check]
Environment: scripts/setup-reference-venv.sh (trainer/reference/requirements.txt).
"""
import argparse
import json
import os
import shutil
import tempfile

import torch
from safetensors.torch import save_file, load_file
from transformers import AutoTokenizer, Qwen2ForCausalLM, get_linear_schedule_with_warmup
from peft import LoraConfig, PeftModel, get_peft_model, get_peft_model_state_dict

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
RANK, ALPHA = 4, 8.0
LR, WD, EPS, WARMUP = 1e-2, 0.01, 1e-8, 1
BATCH, ACCUM, MAX_STEPS, SEED = 2, 2, 3, 0
# Every case's pre-clip total gradient norm is above this on all 3 steps (asserted below).
MAX_GRAD_NORM = 5.0
RUST_TOL = 2e-5

DATA = [
    {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."}]},
    {"messages": [
        {"role": "user", "content": "How do I bake bread?"},
        {"role": "assistant", "content": "Mix flour, water, salt and yeast, then bake it hot."}]},
    {"messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! Cafe?", "weight": 0},
        {"role": "user", "content": "Yes, the lazy dog."},
        {"role": "assistant", "content": "Sorry, I cannot help with that.", "weight": 1}]},
    {"messages": [
        {"role": "user", "content": "Name a programming language."},
        {"role": "assistant", "content": "Rust."}]},
    {"messages": [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Fox colour?"},
        {"role": "assistant", "content": "Brown", "weight": 0},
        {"role": "user", "content": "And the dog?"},
        {"role": "assistant", "content": "Lazy."}]},
    {"messages": [
        {"role": "user", "content": "Count to five."},
        {"role": "assistant", "content": "1 2 3 4 5"}]},
    {"messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Share your password?"},
        {"role": "assistant", "content": "Never share a password."}]},
    {"messages": [
        {"role": "user", "content": "What are tokens?"},
        {"role": "assistant", "content": "Pieces of text a model reads."},
        {"role": "user", "content": "And adapters?"},
        {"role": "assistant", "content": "Small trained weights."}]},
    {"messages": [
        {"role": "user", "content": "Say something in French."},
        {"role": "assistant", "content": "Emigre cafe naive resume."}]},
    {"messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Quick brown what?"},
        {"role": "assistant", "content": "Fox."}]},
    {"messages": [
        {"role": "user", "content": "Is Python a snake?"},
        {"role": "assistant", "content": "Also a language.", "weight": 1}]},
    {"messages": [
        {"role": "user", "content": "Bake at what heat?"},
        {"role": "assistant", "content": "Hot.", "weight": 0},
        {"role": "user", "content": "How hot?"},
        {"role": "assistant", "content": "Very hot, then let it rest."}]},
]

REGULARIZERS = {
    "plain": {"type": "none"},
    "kl": {"type": "kl", "lambda": 0.5, "direction": "forward", "tokens": "answer"},
    "ldifs": {"type": "ldifs", "lambda": 2.0, "layers": [1, 2]},
    "steering": {"type": "steering", "alpha": 2.0, "layers": [1], "vector": "../../steer.safetensors"},
}
DESCRIPTIONS = {
    "plain": "training fixture: no regularizer",
    "kl": "training fixture: forward KL to the base model on answer tokens",
    "ldifs": "training fixture: LDIFS on layers 1 and 2",
    "steering": "training fixture: steering at layer 1",
}


# ---------------------------------------------------------------- data and tokenization

def strip_weights(messages):
    return [{k: v for k, v in m.items() if k != "weight"} for m in messages]


def encode(tok, example):
    """ids and answer mask: assistant content + its <|im_end|>, for messages with weight != 0,
    by character offsets of the rendered text (as make_fixtures.py does)."""
    msgs = example["messages"]
    plain = strip_weights(msgs)
    text = tok.apply_chat_template(plain, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans = []
    for i, m in enumerate(msgs):
        if m["role"] != "assistant" or m.get("weight", 1) == 0:
            continue
        prefix = tok.apply_chat_template(plain[:i], tokenize=False, add_generation_prompt=True)
        start = len(prefix)
        assert text[start:start + len(m["content"])] == m["content"]
        end = start + len(m["content"]) + len("<|im_end|>")
        assert text[start + len(m["content"]):end] == "<|im_end|>"
        spans.append((start, end))
    mask = [any(st < b and e > a for (a, b) in spans) for (st, e) in enc["offset_mapping"]]
    ids = enc["input_ids"]
    ids_hf = tok.apply_chat_template(plain, tokenize=True, add_generation_prompt=False,
                                     return_dict=True)["input_ids"]
    assert ids == ids_hf, "offset tokenization differs from apply_chat_template"
    assert not mask[0]
    return ids, mask


def collate(examples, pad_id):
    """Right-pads a micro-batch: input_ids, attention_mask, answer mask (bool)."""
    T = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    att = torch.zeros((len(examples), T), dtype=torch.long)
    ans = torch.zeros((len(examples), T), dtype=torch.bool)
    for b, (i, m) in enumerate(examples):
        ids[b, :len(i)] = torch.tensor(i)
        att[b, :len(i)] = 1
        ans[b, :len(m)] = torch.tensor(m)
    return ids, att, ans


def windows(encoded):
    micro = [encoded[i:i + BATCH] for i in range(0, len(encoded), BATCH)]
    return [micro[i:i + ACCUM] for i in range(0, len(micro), ACCUM)]


# ---------------------------------------------------------------- fixtures: adapter, vectors

def load_base(model_dir, dtype):
    return Qwen2ForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")


def tidy_adapter_dir(ad, base_name="tiny_tied"):
    """Machine-independent: relative base model name, sorted targets, no model card."""
    cfg_path = os.path.join(ad, "adapter_config.json")
    cfg = json.load(open(cfg_path))
    cfg["base_model_name_or_path"] = base_name
    if isinstance(cfg.get("target_modules"), list):
        cfg["target_modules"] = sorted(cfg["target_modules"])
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2)
    readme = os.path.join(ad, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


def make_init_adapter(model_dir, out):
    cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, use_rslora=True,
                     target_modules=TARGETS, task_type="CAUSAL_LM")
    pm = get_peft_model(load_base(model_dir, torch.float32), cfg)
    g = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters()):
            if "lora_A" in n or "lora_B" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    pm.save_pretrained(out)
    tidy_adapter_dir(out)


def make_steer(model_dir, path):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    g = torch.Generator().manual_seed(4321)
    v = 0.5 * torch.randn((cfg["num_hidden_layers"] + 1, cfg["hidden_size"]), generator=g)
    save_file({"vectors": v.float().contiguous()}, path)


def write_policy(path, case, max_grad_norm):
    reg = REGULARIZERS[case]

    def val(v):
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return repr(v).replace("e-0", "e-")

    lines = ["# Built by trainer/reference/make_train_fixtures.py; do not edit by hand.",
             f"description = {val(DESCRIPTIONS[case])}", "", "[interleave]", 'method = "none"', "",
             "[regularizer]"]
    lines += [f"{k} = {val(v)}" for k, v in reg.items()]
    lines += ["", "[training]",
              f"lora_rank = {RANK}", f"lora_alpha = {ALPHA!r}", "lora_dropout = 0.0",
              'lora_scaling = "rslora"', f"lora_targets = {val(TARGETS)}",
              f"learning_rate = {val(LR)}", f"weight_decay = {val(WD)}", f"adam_epsilon = {val(EPS)}",
              'schedule = "linear"', f"warmup_steps = {WARMUP}", f"batch_size = {BATCH}",
              f"gradient_accumulation_steps = {ACCUM}", "epochs = 1", "max_length_tokens = 2048",
              f"seed = {SEED}", "shuffle = false", f"max_grad_norm = {val(max_grad_norm)}", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# ---------------------------------------------------------------- the explicit loop

def load_trainable(model_dir, adapter_dir, dtype):
    pm = PeftModel.from_pretrained(load_base(model_dir, dtype), adapter_dir, is_trainable=True)
    pm = pm.to(dtype)
    for n, p in pm.named_parameters():
        assert p.requires_grad == ("lora_" in n), n
        assert p.dtype == dtype, (n, p.dtype)
    return pm


def lora_params(pm):
    return [p for n, p in pm.named_parameters() if p.requires_grad]


def layer_module(pm, l):
    """Layer index l: 0 = embedding output, l >= 1 = output of decoder block l (before the final norm)."""
    inner = pm.get_base_model().model
    return inner.embed_tokens if l == 0 else inner.layers[l - 1]


class Hooks:
    """Forward hooks: capture h_l for LDIFS, add alpha * v[l] for steering (training forward only)."""

    def __init__(self, pm, capture_layers=(), steer=None):
        self.captured = {}
        self.steer_on = False
        self.handles = []
        steer = steer or {}
        for l in sorted(set(capture_layers) | set(steer)):
            self.handles.append(layer_module(pm, l).register_forward_hook(
                self._hook(l, l in capture_layers, steer.get(l))))

    def _hook(self, l, capture, add):
        def fn(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            if add is not None and self.steer_on:
                h = h + add.to(h.dtype)
            if capture:
                self.captured[l] = h
            if isinstance(output, tuple):
                return (h,) + tuple(output[1:])
            return h
        return fn

    def remove(self):
        for h in self.handles:
            h.remove()


def phi(captured, layers, att):
    """Per example: concat over layers (ascending) of h_l at its non-pad positions, unit L2 norm."""
    out = []
    for b in range(att.shape[0]):
        keep = att[b].bool()
        v = torch.cat([captured[l][b][keep].reshape(-1) for l in sorted(layers)])
        out.append(v / v.norm())
    return out


def train(model_dir, adapter_dir, encoded, case, dtype, max_grad_norm, pad_id, steer_path=None):
    torch.manual_seed(SEED)
    reg = REGULARIZERS[case]
    pm = load_trainable(model_dir, adapter_dir, dtype)
    pm.train()
    params = lora_params(pm)
    opt = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=EPS, weight_decay=WD)
    wins = windows(encoded)
    assert len(wins) == MAX_STEPS
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=WARMUP, num_training_steps=len(wins))

    ldifs_layers = reg["layers"] if reg["type"] == "ldifs" else []
    steer = {}
    if reg["type"] == "steering":
        vecs = load_file(steer_path)["vectors"].to(dtype)
        steer = {l: reg["alpha"] * vecs[l] for l in reg["layers"]}
    hooks = Hooks(pm, ldifs_layers, steer)

    steps = []
    for k, win in enumerate(wins):
        lr = opt.param_groups[0]["lr"]
        batches = [collate(mb, pad_id) for mb in win]
        # n: answer tokens in the window (label positions t >= 1)
        n = sum(int(ans[:, 1:].sum()) for _, _, ans in batches)
        E = sum(ids.shape[0] for ids, _, _ in batches)
        rec = {"step": k, "lr": lr, "loss": 0.0, "ce": 0.0, "kl": 0.0, "ldifs": 0.0,
               "grad_norm": None, "tokens": n}
        for ids, att, ans in batches:
            tgt = ans[:, 1:]
            ref_logp, phi0 = None, None
            if reg["type"] in ("kl", "ldifs"):
                hooks.steer_on = False
                with pm.disable_adapter(), torch.no_grad():
                    ref_logits = pm(input_ids=ids, attention_mask=att).logits
                    if reg["type"] == "kl":
                        ref_logp = torch.log_softmax(ref_logits[:, :-1][tgt], dim=-1)
                    else:
                        phi0 = [p.detach() for p in phi(hooks.captured, ldifs_layers, att)]
                hooks.captured = {}
            hooks.steer_on = True
            logits = pm(input_ids=ids, attention_mask=att).logits
            hooks.steer_on = False
            logp = torch.log_softmax(logits[:, :-1][tgt], dim=-1)      # [answer tokens, vocab]
            nll = -logp.gather(1, ids[:, 1:][tgt].unsqueeze(1)).sum()
            ce = nll / n
            loss = ce
            if reg["type"] == "kl":
                kl = (logp.exp() * (logp - ref_logp)).sum()
                part = reg["lambda"] * kl / n
                rec["kl"] += part.item()
                loss = loss + part
            elif reg["type"] == "ldifs":
                phit = phi(hooks.captured, ldifs_layers, att)
                d = sum(((a - b) ** 2).sum() for a, b in zip(phit, phi0))
                part = reg["lambda"] * d / E
                rec["ldifs"] += part.item()
                loss = loss + part
            hooks.captured = {}
            loss.backward()
            rec["ce"] += ce.item()
            rec["loss"] += loss.item()
        rec["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, max_grad_norm).item()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        steps.append(rec)
    hooks.remove()
    return pm, steps


def adapter_state(pm):
    """PEFT's saved key names -> tensors (what save_pretrained writes)."""
    sd = get_peft_model_state_dict(pm, save_embedding_layers=False)
    return {k: v.detach().clone() for k, v in sd.items()}


def max_abs_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


# ---------------------------------------------------------------- Trainer check

def trainer_check(model_dir, adapter_dir, encoded, pad_id, loop_state, use_default_loss):
    from torch.utils.data import SequentialSampler
    from transformers import Trainer, TrainingArguments

    class SeqTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            return SequentialSampler(train_dataset if train_dataset is not None else self.train_dataset)

    def collator(features):
        ids, att, ans = collate([(f["ids"], f["mask"]) for f in features], pad_id)
        labels = ids.masked_fill(~ans, -100)
        return {"input_ids": ids, "attention_mask": att, "labels": labels}

    def sum_ce(outputs, labels, num_items_in_batch=None):
        # ForCausalLMLoss without its `.float()` upcast (which would round a float64 run to f32)
        logits = outputs.logits
        shift = torch.nn.functional.pad(labels, (0, 1), value=-100)[..., 1:]
        s = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), shift.reshape(-1),
                                              ignore_index=-100, reduction="sum")
        return s / num_items_in_batch

    torch.manual_seed(SEED)
    pm = load_trainable(model_dir, adapter_dir, torch.float64)
    ds = [{"ids": i, "mask": m} for i, m in encoded]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=BATCH, gradient_accumulation_steps=ACCUM,
            learning_rate=LR, weight_decay=WD, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=EPS,
            max_grad_norm=MAX_GRAD_NORM, lr_scheduler_type="linear", warmup_steps=WARMUP,
            max_steps=MAX_STEPS, seed=SEED, remove_unused_columns=False, report_to="none",
            save_strategy="no", logging_steps=1, use_cpu=True, dataloader_drop_last=False,
            disable_tqdm=True)
        tr = SeqTrainer(model=pm, args=args, train_dataset=ds, data_collator=collator,
                        compute_loss_func=None if use_default_loss else sum_ce)
        tr.train()
        norms = [h["grad_norm"] for h in tr.state.log_history if "grad_norm" in h]
    return max_abs_diff(adapter_state(pm), loop_state), norms


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                         "..", "tests", "fixtures"))
    ap.add_argument("--skip-trainer-check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    model_dir = os.path.join(a.fixtures, "tiny_tied")
    out = os.path.join(a.fixtures, "train")
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)

    tok = AutoTokenizer.from_pretrained(model_dir)
    pad_id = tok.pad_token_id
    assert pad_id is not None

    with open(os.path.join(out, "data.jsonl"), "w") as f:
        for ex in DATA:
            f.write(json.dumps(ex) + "\n")
    encoded = [encode(tok, ex) for ex in DATA]
    for i, (ids, m) in enumerate(encoded):
        print(f"example {i}: {len(ids)} tokens, {sum(m[1:])} answer tokens")

    init_dir = os.path.join(out, "init_adapter")
    make_init_adapter(model_dir, init_dir)
    steer_path = os.path.join(out, "steer.safetensors")
    make_steer(model_dir, steer_path)

    init_state = load_file(os.path.join(init_dir, "adapter_model.safetensors"))
    assert all(v.abs().min() > 0 for v in init_state.values())

    summary = {}
    for case in REGULARIZERS:
        cdir = os.path.join(out, "cases", case)
        os.makedirs(cdir)
        write_policy(os.path.join(cdir, "policy.toml"), case, MAX_GRAD_NORM)
        pm, steps = train(model_dir, init_dir, encoded, case, torch.float32, MAX_GRAD_NORM, pad_id, steer_path)
        exp_dir = os.path.join(cdir, "expected")
        # PEFT's save looks the base model's config up by this name: point it at the real folder
        pm.peft_config["default"].base_model_name_or_path = model_dir
        pm.save_pretrained(exp_dir)
        tidy_adapter_dir(exp_dir)
        with open(os.path.join(exp_dir, "steps.json"), "w") as f:
            json.dump(steps, f, indent=1)
        saved = load_file(os.path.join(exp_dir, "adapter_model.safetensors"))
        assert saved.keys() == init_state.keys()
        assert all(v.dtype == torch.float32 for v in saved.values())
        moved = max_abs_diff(saved, init_state)
        assert moved > 100 * RUST_TOL, f"{case}: adapter moved only {moved}"
        for s in steps:
            assert s["grad_norm"] > MAX_GRAD_NORM * 1.05, f"{case} step {s['step']}: clipping inactive ({s['grad_norm']})"
        # the same loop in float64: the f32 fixture must not be sensitive to rounding
        pm64, steps64 = train(model_dir, init_dir, encoded, case, torch.float64, MAX_GRAD_NORM, pad_id, steer_path)
        d64 = max_abs_diff(adapter_state(pm64), saved)
        assert d64 < RUST_TOL / 4, f"{case}: f32 vs f64 differ by {d64}"
        state64 = adapter_state(pm64)
        # a regularizer the Rust side skipped must show: every case is far from plain
        apart = 0.0
        if case != "plain":
            apart = max_abs_diff(state64, summary["plain"]["state64"])
            assert apart > 100 * RUST_TOL, f"{case} is only {apart} from plain"
        summary[case] = {"steps": steps, "f32_vs_f64": d64, "moved": moved, "state64": state64}
        print(f"\n== {case}: adapter moved {moved:.4g} max abs; f32 vs f64 {d64:.3g}; from plain {apart:.3g}")
        for s in steps:
            print("  " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.items()))

    if not a.skip_trainer_check:
        d, norms = trainer_check(model_dir, init_dir, encoded, pad_id, summary["plain"]["state64"], False)
        d_default, _ = trainer_check(model_dir, init_dir, encoded, pad_id, summary["plain"]["state64"], True)
        print(f"\nTrainer (float64, plain, compute_loss_func = sum CE / num_items_in_batch) vs explicit loop: "
              f"max abs {d:.3g}; Trainer pre-clip norms {norms}")
        print(f"Trainer (float64, plain, model's default loss with its f32 upcast) vs explicit loop: "
              f"max abs {d_default:.3g}")
        assert d <= 1e-8, d


if __name__ == "__main__":
    main()
