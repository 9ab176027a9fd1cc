"""Builds the engine's golden fixtures with HuggingFace transformers + PEFT.

Stage 1 (default): tiny random Qwen2 models (tied f32 and untied bf16, GQA, 2 layers,
non-zero biases), a small byte-level BPE tokenizer round-tripped through AutoTokenizer,
PEFT LoRA adapters with non-zero B (rsLoRA on the untied model, classic on the tied one),
and goldens: chat-template ids + answer masks, per-token logprobs (base and adapted),
greedy 32-token generations.

Stage 2 (`--stage2`): loads the adapter the Rust engine saved in
fixtures/rust_saved_adapter with PEFT and records its logits in goldens_stage2.json.

Stage bf16 (`--bf16`): loads the committed models and adapters in bf16 (eager attention; PEFT
keeps the adapters in f32) and records per-token logprobs in goldens_bf16.json, the reference
for the engine's bf16 compute path.

Stage llama (`--llama`): tiny random Llama models with the stage-1 tokenizer — tiny_llama (tied,
no biases, like SmolLM2) and tiny_llama_bias (untied, attention_bias and mlp_bias on) — with
PEFT adapters a1/a2 and goldens_llama.json shaped like goldens.json (base and adapted
per-token logprobs, greedy 32-token generations). Needs stage 1's tiny_tied tokenizer.

Stage gguf (`--gguf`, after `--llama`): writes tiny_llama as a GGUF file the way llama.cpp's
converter does (tensor names, q/k row permutation, tokenizer metadata) with a different storage
type per projection (F32 norms, Q8_0, Q4_0, Q4_1, F16, BF16), loads it back with transformers
(`gguf_file=`) and records goldens_gguf.json: token ids of CORPUS, chat-template ids and masks,
base and adapted (tiny_llama_a1/a2) per-token logprobs, greedy generations.

Usage: python make_fixtures.py [--out trainer/tests/fixtures] [--stage2 | --bf16 | --llama | --gguf]
"""
import argparse
import json
import math
import os
import shutil

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM
from peft import LoraConfig, get_peft_model, PeftModel

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
CORPUS = [
    "You are a helpful assistant. How do I bake bread at home?",
    "Mix flour, water, salt and yeast; knead, let it rise, then bake it hot.",
    "What is the capital of France? The capital of France is Paris.",
    "Never share your password. I cannot help with that request, sorry.",
    "Rust and Python are programming languages; tokens, models and adapters.",
    "The quick brown fox jumps over the lazy dog 0123456789 times!",
    "Émigré café naïve résumé — unicode text, ñandú, 東京, emoji 🙂.",
]
CONVERSATIONS = [
    [{"role": "user", "content": "How do I bake bread?"},
     {"role": "assistant", "content": "Mix flour, water and yeast, then bake."}],
    [{"role": "system", "content": "You are terse."},
     {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris."}],
    [{"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! Café?"},
     {"role": "user", "content": "Yes, the lazy dog."},
     {"role": "assistant", "content": "Sorry, I cannot help with that request."}],
]
PROMPTS = ["How do I bake bread?", "The quick brown fox"]


def build_tokenizer(out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    raw = os.path.join(out, "_raw_tok")
    os.makedirs(raw, exist_ok=True)
    tok.save(os.path.join(raw, "tokenizer.json"))
    with open(os.path.join(raw, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>",
                   "pad_token": "<|endoftext|>", "bos_token": None,
                   "chat_template": TEMPLATE, "model_max_length": 4096}, f)
    with open(os.path.join(raw, "config.json"), "w") as f:
        json.dump({"model_type": "qwen2"}, f)
    hf = AutoTokenizer.from_pretrained(raw)
    shutil.rmtree(raw)
    return hf


def build_model(vocab, tied, seed, im_end, pad, gain=1.0):
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=tied,
                      eos_token_id=im_end, pad_token_id=pad, bos_token_id=None)
    model = Qwen2ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            elif "embed" in name or "lm_head" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(gain * torch.randn_like(p) / math.sqrt(p.shape[1]))
    return model


def build_llama(vocab, tied, bias, seed, im_end, pad, gain=1.0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=tied,
                      attention_bias=bias, mlp_bias=bias, hidden_act="silu",
                      eos_token_id=im_end, pad_token_id=pad, bos_token_id=None)
    model = LlamaForCausalLM(cfg).float().eval()
    randomize(model, gain)
    return model


def randomize(model, gain):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            elif "embed" in name or "lm_head" in name:
                p.copy_(0.5 * torch.randn_like(p))
            else:
                p.copy_(gain * torch.randn_like(p) / math.sqrt(p.shape[1]))


def answer_mask(tok, messages):
    """Assistant content plus its <|im_end|>, by character offsets of the rendered text."""
    text = tok.apply_chat_template(messages, tokenize=False)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spans, pos = [], 0
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        prefix = tok.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        start = len(prefix)
        assert text[start:start + len(m["content"])] == m["content"]
        end = start + len(m["content"]) + len("<|im_end|>")
        spans.append((start, end))
    mask = [int(any(st < b and e > a for (a, b) in spans)) for (st, e) in enc["offset_mapping"]]
    return enc["input_ids"], mask


def tidy_adapter_dir(ad, base_name):
    """Keeps fixtures machine-independent: relative base model name, no model card."""
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


def token_logprobs(model, ids):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    return [lp[t - 1, ids[t]].item() for t in range(1, len(ids))]


def greedy(model, ids, n=32):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                             max_new_tokens=n, do_sample=False, eos_token_id=None, pad_token_id=0)
        logits = model(out).logits[0, len(ids) - 1:-1].float()
    top2 = torch.topk(logits, 2, dim=-1).values
    margin = (top2[:, 0] - top2[:, 1]).min().item()
    return out[0, len(ids):].tolist(), margin


def stage1(out):
    tok = build_tokenizer(out)
    vocab = len(tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    gold = {"template": [], "models": {}}
    for conv in CONVERSATIONS:
        ids_hf = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
        ids, mask = answer_mask(tok, conv)
        assert ids == ids_hf, "offset tokenization differs from apply_chat_template"
        gen_ids = tok.apply_chat_template(conv[:-1], tokenize=True, add_generation_prompt=True,
                                          return_dict=True)["input_ids"]
        gold["template"].append({"messages": conv, "ids": ids, "mask": mask,
                                 "prompt_ids": gen_ids})
    # gain 3 on the tied model keeps its greedy output from collapsing onto one token.
    specs = [("tiny_tied", True, 1, "classic", 3.0), ("tiny_untied", False, 2, "rslora", 1.0)]
    for name, tied, seed, kind, gain in specs:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        model = build_model(vocab, tied, seed, im_end, pad, gain)
        dtype = torch.float32 if tied else torch.bfloat16
        model.to(dtype).save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        model = Qwen2ForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        entry = {"base": [], "greedy": [], "adapters": {}}
        for t in gold["template"]:
            entry["base"].append(token_logprobs(model, t["ids"]))
        for p in PROMPTS:
            ids = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                          add_generation_prompt=True, return_dict=True)["input_ids"]
            toks, margin = greedy(model, ids)
            entry["greedy"].append({"prompt_ids": ids, "tokens": toks, "min_margin": margin})
        for an, r, alpha, targets in [("a1", 4, 8, None), ("a2", 2, 4, ["q_proj", "v_proj", "down_proj"])]:
            torch.manual_seed(seed * 100 + r)
            cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, use_rslora=(kind == "rslora"),
                             target_modules=targets or ["q_proj", "k_proj", "v_proj", "o_proj",
                                                        "gate_proj", "up_proj", "down_proj"],
                             task_type="CAUSAL_LM")
            base = Qwen2ForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
            pm = get_peft_model(base, cfg)
            with torch.no_grad():
                for n_, p in pm.named_parameters():
                    if "lora_B" in n_:
                        p.copy_(0.3 * torch.randn_like(p))
            ad = os.path.join(out, f"{name}_{an}")
            pm.save_pretrained(ad)
            tidy_adapter_dir(ad, name)
            pm.eval()
            entry["adapters"][an] = [token_logprobs(pm, t["ids"]) for t in gold["template"]]
        gold["models"][name] = entry
    with open(os.path.join(out, "goldens.json"), "w") as f:
        json.dump(gold, f)


def stage2(out):
    ad = os.path.join(out, "rust_saved_adapter")
    base = Qwen2ForCausalLM.from_pretrained(os.path.join(out, "tiny_untied"), dtype=torch.float32).eval()
    pm = PeftModel.from_pretrained(base, ad).eval()
    gold = json.load(open(os.path.join(out, "goldens.json")))
    res = [token_logprobs(pm, t["ids"]) for t in gold["template"]]
    with open(os.path.join(out, "goldens_stage2.json"), "w") as f:
        json.dump({"model": "tiny_untied", "adapter": "rust_saved_adapter", "logprobs": res}, f)


def add_adapters(model_cls, out, name, seed, kind, gold_template, entry):
    for an, r, alpha, targets in [("a1", 4, 8, None), ("a2", 2, 4, ["q_proj", "v_proj", "down_proj"])]:
        torch.manual_seed(seed * 100 + r)
        cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, use_rslora=(kind == "rslora"),
                         target_modules=targets or ["q_proj", "k_proj", "v_proj", "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"],
                         task_type="CAUSAL_LM")
        base = model_cls.from_pretrained(os.path.join(out, name), dtype=torch.float32).eval()
        pm = get_peft_model(base, cfg)
        with torch.no_grad():
            for n_, p in pm.named_parameters():
                if "lora_B" in n_:
                    p.copy_(0.3 * torch.randn_like(p))
        ad = os.path.join(out, f"{name}_{an}")
        pm.save_pretrained(ad)
        tidy_adapter_dir(ad, name)
        pm.eval()
        entry["adapters"][an] = [token_logprobs(pm, t["ids"]) for t in gold_template]


def stage_llama(out):
    tok = AutoTokenizer.from_pretrained(os.path.join(out, "tiny_tied"))
    stage1 = json.load(open(os.path.join(out, "goldens.json")))
    for t in stage1["template"]:
        ids = tok.apply_chat_template(t["messages"], tokenize=True, return_dict=True)["input_ids"]
        assert ids == t["ids"], "the stage-1 tokenizer no longer gives goldens.json's ids"
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    gold = {"template": stage1["template"], "models": {}}
    # gain 3 keeps the tied model's greedy output from collapsing onto one token.
    specs = [("tiny_llama", True, False, 3, "classic", 3.0),
             ("tiny_llama_bias", False, True, 4, "rslora", 1.0)]
    for name, tied, bias, seed, kind, gain in specs:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        build_llama(len(tok), tied, bias, seed, im_end, pad, gain).save_pretrained(d, safe_serialization=True)
        tok.save_pretrained(d)
        model = LlamaForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        entry = {"base": [token_logprobs(model, t["ids"]) for t in gold["template"]], "greedy": [],
                 "adapters": {}}
        for p in PROMPTS:
            ids = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                          add_generation_prompt=True, return_dict=True)["input_ids"]
            toks, margin = greedy(model, ids)
            entry["greedy"].append({"prompt_ids": ids, "tokens": toks, "min_margin": margin})
        add_adapters(LlamaForCausalLM, out, name, seed, kind, gold["template"], entry)
        gold["models"][name] = entry
    with open(os.path.join(out, "goldens_llama.json"), "w") as f:
        json.dump(gold, f)


# Storage type of each tiny_llama tensor in tiny_llama.gguf: every type the engine dequantizes.
GGUF_TYPES = {
    "token_embd": "Q8_0", "attn_q": "Q4_0", "attn_k": "Q4_1", "attn_v": "F16",
    "attn_output": "BF16", "ffn_gate": "Q4_1", "ffn_up": "Q8_0", "ffn_down": "Q4_0",
}


def llama_cpp_permute(w, n_head):
    """convert_hf_to_gguf.py's LlamaModel.permute."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(out, name):
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    src = os.path.join(out, name)
    cfg = json.load(open(os.path.join(src, "config.json")))
    assert cfg["tie_word_embeddings"], "the GGUF fixture is the tied model (no output.weight)"
    weights = load_file(os.path.join(src, "model.safetensors"))
    tok = json.load(open(os.path.join(src, "tokenizer.json")))
    tcfg = json.load(open(os.path.join(src, "tokenizer_config.json")))
    vocab = tok["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens)))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]]
    specials = {a["content"] for a in tok["added_tokens"] if a["special"]}
    path = os.path.join(out, f"{name}.gguf")
    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_dimension_count(cfg["hidden_size"] // cfg["num_attention_heads"])
    w.add_vocab_size(len(tokens))
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in specials else 1 for t in tokens])
    w.add_token_merges(merges)
    w.add_eos_token_id(vocab[tcfg["eos_token"]])
    w.add_pad_token_id(vocab[tcfg["pad_token"]])
    w.add_add_bos_token(False)
    w.add_chat_template(open(os.path.join(src, "chat_template.jinja")).read())

    def put(gguf_name, hf_name, kind):
        x = weights[hf_name].astype(np.float32)
        qtype = getattr(gguf.GGMLQuantizationType, kind)
        data = gguf.quants.quantize(x, qtype)
        w.add_tensor(gguf_name, data, raw_shape=data.shape if kind in ("F32", "F16") else None,
                     raw_dtype=None if kind in ("F32", "F16") else qtype)

    put("token_embd.weight", "model.embed_tokens.weight", GGUF_TYPES["token_embd"])
    put("output_norm.weight", "model.norm.weight", "F32")
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}"
        weights[f"{p}.self_attn.q_proj.weight"] = llama_cpp_permute(weights[f"{p}.self_attn.q_proj.weight"], heads)
        weights[f"{p}.self_attn.k_proj.weight"] = llama_cpp_permute(weights[f"{p}.self_attn.k_proj.weight"], kv_heads)
        put(f"blk.{n}.attn_norm.weight", f"{p}.input_layernorm.weight", "F32")
        put(f"blk.{n}.ffn_norm.weight", f"{p}.post_attention_layernorm.weight", "F32")
        for g, hf in [("attn_q", "self_attn.q_proj"), ("attn_k", "self_attn.k_proj"),
                      ("attn_v", "self_attn.v_proj"), ("attn_output", "self_attn.o_proj"),
                      ("ffn_gate", "mlp.gate_proj"), ("ffn_up", "mlp.up_proj"),
                      ("ffn_down", "mlp.down_proj")]:
            put(f"blk.{n}.{g}.weight", f"{p}.{hf}.weight", GGUF_TYPES[g])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def stage_gguf(out):
    name = "tiny_llama"
    path = write_tiny_gguf(out, name)
    file = os.path.basename(path)
    tok = AutoTokenizer.from_pretrained(out, gguf_file=file)
    base = lambda: LlamaForCausalLM.from_pretrained(out, gguf_file=file, dtype=torch.float32).eval()  # noqa: E731
    model = base()
    gold = {"tokens": [{"text": t, "ids": tok(t, add_special_tokens=False)["input_ids"]} for t in CORPUS],
            "template": [], "models": {}}
    for conv in CONVERSATIONS:
        ids_hf = tok.apply_chat_template(conv, tokenize=True, return_dict=True)["input_ids"]
        ids, mask = answer_mask(tok, conv)
        assert ids == ids_hf, "offset tokenization differs from apply_chat_template"
        gen_ids = tok.apply_chat_template(conv[:-1], tokenize=True, add_generation_prompt=True,
                                          return_dict=True)["input_ids"]
        gold["template"].append({"messages": conv, "ids": ids, "mask": mask, "prompt_ids": gen_ids})
    entry = {"base": [token_logprobs(model, t["ids"]) for t in gold["template"]], "greedy": [],
             "adapters": {}}
    for p in PROMPTS:
        ids = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=True,
                                      add_generation_prompt=True, return_dict=True)["input_ids"]
        toks, margin = greedy(model, ids)
        entry["greedy"].append({"prompt_ids": ids, "tokens": toks, "min_margin": margin})
    for an in ("a1", "a2"):
        pm = PeftModel.from_pretrained(base(), os.path.join(out, f"{name}_{an}")).eval()
        entry["adapters"][an] = [token_logprobs(pm, t["ids"]) for t in gold["template"]]
    gold["models"][name] = entry
    with open(os.path.join(out, "goldens_gguf.json"), "w") as f:
        json.dump(gold, f)


def stage_bf16(out):
    gold = json.load(open(os.path.join(out, "goldens.json")))
    res = {}
    for name in ("tiny_tied", "tiny_untied"):
        def base():
            return Qwen2ForCausalLM.from_pretrained(
                os.path.join(out, name), dtype=torch.bfloat16, attn_implementation="eager").eval()
        entry = {"base": [token_logprobs(base(), t["ids"]) for t in gold["template"]], "adapters": {}}
        for an in ("a1", "a2"):
            pm = PeftModel.from_pretrained(base(), os.path.join(out, f"{name}_{an}")).eval()
            entry["adapters"][an] = [token_logprobs(pm, t["ids"]) for t in gold["template"]]
        res[name] = entry
    with open(os.path.join(out, "goldens_bf16.json"), "w") as f:
        json.dump({"models": res}, f)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures"))
    ap.add_argument("--stage2", action="store_true")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--llama", action="store_true")
    ap.add_argument("--gguf", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.stage2:
        stage2(a.out)
    elif a.bf16:
        stage_bf16(a.out)
    elif a.llama:
        stage_llama(a.out)
    elif a.gguf:
        stage_gguf(a.out)
    else:
        stage1(a.out)
