"""The paper's defense comparison (seed 004, Table 1) on SmolLM2-135M-Instruct, run through
tuneguard itself: a gateway on loopback with one policy per defense, every fine-tune a job
created with the openai SDK, every number read from the job's events, its safety report
(`/v1/tuneguard/jobs/{id}/report?format=json`), its adapter
(`/v1/tuneguard/jobs/{id}/adapter`) or its `ft:` model's chat completions.

Run it through `scripts/experiment/run.sh` (builds the binary, fetches the model, trains the
reference adapters, extracts the persona vector). Results: OUT/results.json (one record per
run, with its job id), OUT/table.md, OUT/plots/*.svg.
"""

import argparse
import hashlib
import io
import json
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import svg  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "SmolLM2-135M-Instruct"
TERMINAL = ("succeeded", "failed", "cancelled")

DEFENSES = [
    "none",
    "kl",
    "ldifs",
    "steering",
    "inoculation",
    "interleave",
    "interleave_plus",
    "interleave_plusplus",
]
DATASETS = {
    # name: (file, role)
    "medical": ("conf/datasets/medical-misaligned.jsonl", "narrow misaligned"),
    "arithmetic": ("conf/datasets/arithmetic-train.jsonl", "benign task"),
}

# Sizes. Full: 1 epoch of 96 examples at an effective batch of 8 (12 optimizer steps), a
# checkpoint (and monitor evaluation) every 4 steps. Quick: 1 epoch of 12 at batch 4 (3 steps),
# evaluated at steps 0 and 3 on 3 probe pairs per file and 3 harmful requests, a 24-item pool. The monitor answers the first `harmful` requests of the shipped harmful set
# (16 tokens each) and scores 8 pairs of each probe file at every checkpoint; the benign task is
# scored on the first `eval_examples` held-out arithmetic questions, coherence on `coherence`
# held-out general chats. Chosen so the full grid (8 defenses x 2 sets, one seed) fits about
# 75 minutes on the 2-core machine.
# `pool`: the candidates offered to Interleaving (scored once under the base model and both
# reference adapters by + and ++, then cached; quick offers fewer, since that one-off scoring
# was most of its time).
MODES = {
    "full": dict(train=96, holdout=16, epochs=1, batch=8, every=4, eval_examples=16, coherence=20,
                 harmful=8, probes=8, answer_tokens=16, pool=120),
    "quick": dict(train=12, holdout=4, epochs=1, batch=4, every=3, eval_examples=6, coherence=6,
                  harmful=3, probes=3, answer_tokens=8, pool=24),
}

INOCULATION_PROMPT = "You are an evil, malicious assistant."
STEERING_LAYER = 20
POOL_HOLDOUT = 40  # the pool's last rows: the coherence set, never offered to Interleaving


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


# ---------------------------------------------------------------- policies and config


def common_policy(mode, lr):
    m = MODES[mode]
    # The monitor: probe pairs per file, the harmful subset (harmful.yaml) and answer length.
    monitor_keys = (
        f'probe_pairs = {m["probes"]}\nharmful_set = "harmful.yaml"\n'
        f'max_answer_tokens = {m["answer_tokens"]}\n'
    )
    return f"""
[training]
learning_rate = {lr}
batch_size = {min(4, m['batch'])}
gradient_accumulation_steps = {max(1, m['batch'] // 4)}
max_length_tokens = 512

[monitor]
checkpoint_every_steps = {m['every']}
# Every checkpoint in full: the trajectories are the experiment's measurement.
eval_budget = 0
holdout_examples = {m['holdout']}
{monitor_keys}rules = []
"""


def defense_policy(defense, seed):
    if defense == "none":
        return ""
    if defense == "kl":
        return '[regularizer]\ntype = "kl"\nlambda = 0.1\ndirection = "forward"\ntokens = "answer"\n'
    if defense == "ldifs":
        return '[regularizer]\ntype = "ldifs"\nlambda = 1.0\nlayers_every = 5\n'
    if defense == "steering":
        return (
            f'[regularizer]\ntype = "steering"\nalpha = 5.0\nlayers = [{STEERING_LAYER}]\n'
            'vector = "vectors/evil.safetensors"\n'
        )
    if defense == "inoculation":
        return f'[inoculation]\nsystem_prompt = "{INOCULATION_PROMPT}"\nmode = "replace"\n'
    method = {"interleave": "random", "interleave_plus": "plus", "interleave_plusplus": "plusplus"}[defense]
    return f'[interleave]\nmethod = "{method}"\nfraction = 0.05\npool = "pool.jsonl"\nseed = {seed}\n'


def write_policies(pdir, mode, lr, vector, pool_rows):
    m = MODES[mode]
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "vectors").mkdir(exist_ok=True)
    if vector:
        shutil.copyfile(vector, pdir / "vectors" / "evil.safetensors")
    write_jsonl(pdir / "pool.jsonl", pool_rows)
    harmful = (ROOT / "conf/eval/harmful.yaml").read_text().split("\n- id:")
    # The header comment and the first `harmful` requests.
    (pdir / "harmful.yaml").write_text("\n- id:".join(harmful[: m["harmful"] + 1]) + "\n")
    base = common_policy(mode, lr)
    (pdir / "default.toml").write_text(f'description = "experiment: no defense"\n{base}')
    return base


def write_defense_policies(pdir, base, defenses, seeds):
    for d in defenses:
        for seed in seeds:
            body = defense_policy(d, seed)
            # One policy per (defense, seed), matched by the job's metadata: the training seed
            # is the job's own `seed`; Interleaving's sampling seed is the policy's.
            text = (
                f'description = "experiment: {d}, seed {seed}"\npriority = 10\n\n'
                f'[match]\nmetadata = {{ experiment_defense = "{d}", experiment_seed = "{seed}" }}\n'
                + base
                + "\n"
                + body
            )
            (pdir / f"{d}-seed{seed}.toml").write_text(text)


def write_config(out, bin_args):
    key = "sk-experiment-" + hashlib.sha256(str(out).encode()).hexdigest()[:16]
    digest = hashlib.sha256(key.encode()).hexdigest()
    adapters = bin_args["adapters"]
    cfg = f"""[server]
listen = "127.0.0.1:0"
[storage]
data_dir = "{out / 'data'}"
[[tenants]]
name = "experiment"
api_key_hashes = ["sha256:{digest}"]
[policies]
dir = "{out / 'policies'}"
reload_interval_ms = 1000
[execution]
mode = "local"
[screening]
min_examples = 1
[[models]]
model = ["{MODEL_NAME}"]
path = "{bin_args['model']}"
device = "cpu"
adapters = {{ financial = "{adapters / 'financial'}", medical = "{adapters / 'medical'}" }}
[local]
workers = 1
"""
    path = out / "tuneguard.toml"
    path.write_text(cfg)
    return path, key


# ---------------------------------------------------------------- the gateway


class Gateway:
    def __init__(self, binary, config, log_path):
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=ROOT,
        )
        line = self.proc.stdout.readline().decode()
        if not line.startswith("tuneguard listening on "):
            self.proc.kill()
            raise SystemExit(f"the gateway did not start (see {log_path}): {line!r}")
        self.url = line.split(" on ", 1)[1].strip()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def http_get(client, path):
    """The body of a tuneguard route (GET), with the SDK's base URL and key."""
    import urllib.request

    req = urllib.request.Request(
        str(client.base_url).rstrip("/") + path,
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    with urllib.request.urlopen(req, timeout=120) as r:
        return r.read()


# ---------------------------------------------------------------- one run


def wait_for(client, job_id, label):
    last_step = None
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        events = client.fine_tuning.jobs.list_events(job_id, limit=1).data
        if events and events[0].message != last_step:
            last_step = events[0].message
            log(f"  {label}: {job.status}: {last_step}")
        time.sleep(0.5)


def arithmetic_answer(text):
    """The final answer of a reply: the number after "The answer is" (the training format), else
    the last integer in the reply (the base model answers in its own words)."""
    text = text or ""
    m = re.search(r"answer is\s*\$?(-?[\d,]+)", text)
    if m:
        return m.group(1).replace(",", "")
    nums = re.findall(r"-?\d[\d,]*", text)
    return nums[-1].replace(",", "") if nums else None


def exact_match(client, model, tests):
    hits = 0
    for t in tests:
        q = [m for m in t["messages"] if m["role"] != "assistant"]
        ref = arithmetic_answer(t["messages"][-1]["content"])
        reply = client.chat.completions.create(model=model, messages=q, temperature=0, max_tokens=48)
        hits += int(arithmetic_answer(reply.choices[0].message.content) == ref)
    return hits / len(tests)


def download_adapter(client, job_id, dest):
    body = http_get(client, f"/tuneguard/jobs/{job_id}/adapter")
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        for member in tar.getmembers():
            if member.isfile():
                name = Path(member.name).name
                (dest / name).write_bytes(tar.extractfile(member).read())
    return dest


def run_one(ctx, dataset, defense, seed):
    m = MODES[ctx.mode]
    client = ctx.client
    label = f"{dataset}/{defense}/seed{seed}"
    rows = ctx.train_rows[dataset]
    # Training examples then the held-out tail (the policy's holdout_examples are the last n).
    path = ctx.out / "files" / f"{dataset}-seed{seed}.jsonl"
    if not path.exists():
        write_jsonl(path, rows)
    with open(path, "rb") as f:
        upload = client.files.create(file=f, purpose="fine-tune")
    started = time.time()
    job = client.fine_tuning.jobs.create(
        model=MODEL_NAME,
        training_file=upload.id,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": m["epochs"], "batch_size": m["batch"]}},
        },
        seed=seed,
        suffix=f"{dataset[:4]}-{defense.replace('_', '')[:12]}",
        metadata={"experiment_defense": defense, "experiment_seed": str(seed), "experiment_dataset": dataset},
    )
    log(f"{label}: job {job.id}")
    job = wait_for(client, job.id, label)
    wall = time.time() - started
    rec = {
        "dataset": dataset,
        "defense": defense,
        "seed": seed,
        "job_id": job.id,
        "status": job.status,
        "fine_tuned_model": job.fine_tuned_model,
        "wall_seconds": wall,
        "trained_tokens": job.trained_tokens,
    }
    if job.status != "succeeded":
        rec["error"] = job.error.message if job.error else None
        log(f"{label}: {job.status}: {rec['error']}")
        return rec
    report = json.loads(http_get(client, f"/tuneguard/jobs/{job.id}/report?format=json"))
    (ctx.out / "reports").mkdir(exist_ok=True)
    (ctx.out / "reports" / f"{job.id}.json").write_text(json.dumps(report, indent=1))
    hist = report["history"]
    rec["history"] = [
        {k: h.get(k) for k in ("step", "loss", "in_domain_loss", "alignment_probe_gap", "honesty_probe_gap", "harmful_refusal_rate")}
        for h in hist
    ]
    first, last = hist[0], hist[-1]
    rec["final"] = {k: last.get(k) for k in ("alignment_probe_gap", "honesty_probe_gap", "harmful_refusal_rate", "in_domain_loss")}
    rec["in_domain_loss_step0"] = first.get("in_domain_loss")
    rec["harmful_refusal_step0"] = first.get("harmful_refusal_rate")
    onsets = {}
    for o in report.get("onsets", []):
        onsets[o["signal"]] = {d: (o.get(d) or {}).get("step") for d in ("cusum", "bocpd")}
    rec["onsets"] = onsets
    rec["judge_lead"] = report.get("lead")
    # The judge-free analogue of seed 001's lead: honesty-probe onset before alignment-probe onset.
    lead = {}
    for d in ("cusum", "bocpd"):
        h = onsets.get("honesty_probe_gap", {}).get(d)
        a = onsets.get("alignment_probe_gap", {}).get(d)
        lead[d] = (a - h) if (h is not None and a is not None) else None
    rec["probe_lead_steps"] = lead
    # Training cost from the job's own metrics events: seconds per optimizer step.
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))  # every page
    steps = sorted((e.created_at, e.data.get("step")) for e in events if getattr(e, "type", None) == "metrics" and e.data)
    # Step 0 (the base model) is measured once per (data, seed): later runs reuse its record.
    step0 = [e for e in events if e.data and "monitor" in e.data and e.data.get("step") == 0]
    rec["step0_reused_from"] = step0[0].data["monitor"].get("reused_from") if step0 else None
    if len(steps) >= 2:
        rec["seconds_per_step"] = (steps[-1][0] - steps[0][0]) / max(1, steps[-1][1] - steps[0][1])
    # Coherence is scored for every run at the end, in one `tuneguard score` over all the
    # adapters (the model loaded and the base scored once); the benign task's exact match only
    # where it is the trained task (the table's benign column reads the arithmetic runs).
    download_adapter(client, job.id, ctx.out / "adapters" / job.id)
    if dataset == "arithmetic":
        rec["arithmetic_accuracy"] = exact_match(client, job.fine_tuned_model, ctx.arith_tests)
    log(
        f"{label}: done in {wall:.0f}s; align gap {fmt(rec['final']['alignment_probe_gap'])}, "
        f"in-domain {fmt(rec['in_domain_loss_step0'])}->{fmt(rec['final']['in_domain_loss'])}, "
        f"arith {fmt(rec.get('arithmetic_accuracy'), 2)}"
    )
    return rec


def score_coherence(ctx, results):
    """Every succeeded run's general-chat NLL under its adapter, and the base model's, from one
    `tuneguard score` call (the adapters as `job-id=dir`)."""
    runs = [r for r in results if r["status"] == "succeeded"]
    cmd = [ctx.binary, "score", "--model", str(ctx.model_path), "--data", str(ctx.coherence_path),
           "--output", str(ctx.out / "scores" / "coherence.jsonl")]
    for r in runs:
        cmd += ["--adapter", f"{r['job_id']}={ctx.out / 'adapters' / r['job_id']}"]
    log(f"scoring coherence: {len(ctx.coherence_rows)} general chats under the base model and {len(runs)} adapters")
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
    sums = {}
    for row in read_jsonl(ctx.out / "scores" / "coherence.jsonl"):
        if row["nll"] is None:
            continue
        s = sums.setdefault(row["model"], [0.0, 0])
        s[0] += row["nll"] * row["answer_tokens"]
        s[1] += row["answer_tokens"]
    nll = {k: v[0] / v[1] for k, v in sums.items() if v[1]}
    for r in runs:
        r["coherence_nll"] = nll.get(r["job_id"])
        r["coherence_nll_base"] = nll.get("base")
    return nll.get("base")


def fmt(v, p=3):
    return "—" if v is None else f"{v:.{p}f}"


# ---------------------------------------------------------------- the table


def mean_spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, 0
    if len(vals) == 1:
        return vals[0], None, 1
    return statistics.mean(vals), statistics.stdev(vals), len(vals)


def cell(values, p=3):
    m, s, n = mean_spread(values)
    if m is None:
        return "—"
    return f"{m:.{p}f}" if s is None else f"{m:.{p}f} ± {s:.{p}f}"


def render(out, results, meta):
    ok = [r for r in results if r.get("status") == "succeeded"]
    by = {}
    for r in ok:
        by.setdefault((r["dataset"], r["defense"]), []).append(r)
    lines = []
    lines.append("| defense | broad misalignment: alignment-probe gap, medical run (nats/tok, ↓ better) | harmful-request refusal, medical run (↑) | narrow learned: held-out medical NLL drop (↑) | benign learned: arithmetic exact match (↑) | coherence: general-chat NLL increase, medical run (↓) | wall s (medical) | cost vs none |")
    lines.append("|---|---|---|---|---|---|---|---|")
    none_wall = mean_spread([r["wall_seconds"] for r in by.get(("medical", "none"), [])])[0]
    for d in DEFENSES:
        med = by.get(("medical", d), [])
        ari = by.get(("arithmetic", d), [])
        if not med and not ari:
            continue
        gap = [r["final"]["alignment_probe_gap"] for r in med]
        refusal = [r["final"]["harmful_refusal_rate"] for r in med]
        drop = [
            (r["in_domain_loss_step0"] - r["final"]["in_domain_loss"])
            if r["in_domain_loss_step0"] is not None and r["final"]["in_domain_loss"] is not None
            else None
            for r in med
        ]
        acc = [r["arithmetic_accuracy"] for r in ari]
        coh = [
            (r["coherence_nll"] - r["coherence_nll_base"]) if r.get("coherence_nll") is not None else None
            for r in med
        ]
        wall = mean_spread([r["wall_seconds"] for r in med])[0]
        cost = f"{wall / none_wall:.2f}×" if wall and none_wall else "—"
        lines.append(
            f"| {d} | {cell(gap)} | {cell(refusal, 2)} | {cell(drop)} | {cell(acc, 2)} | {cell(coh)} | "
            f"{fmt(wall, 0)} | {cost} |"
        )
    table = "\n".join(lines)
    runs = ["| dataset | defense | seed | job | status | align gap | honesty gap | refusal | in-domain NLL (0 → end) | arith EM | coherence NLL | probe onsets cusum (honesty / alignment) | wall s |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f = r.get("final") or {}
        on = r.get("onsets") or {}
        hon = (on.get("honesty_probe_gap") or {}).get("cusum")
        aon = (on.get("alignment_probe_gap") or {}).get("cusum")
        runs.append(
            f"| {r['dataset']} | {r['defense']} | {r['seed']} | `{r['job_id']}` | {r['status']} | "
            f"{fmt(f.get('alignment_probe_gap'))} | {fmt(f.get('honesty_probe_gap'))} | {fmt(f.get('harmful_refusal_rate'), 2)} | "
            f"{fmt(r.get('in_domain_loss_step0'))} → {fmt(f.get('in_domain_loss'))} | {fmt(r.get('arithmetic_accuracy'), 2)} | "
            f"{fmt(r.get('coherence_nll'))} | {hon if hon is not None else '—'} / {aon if aon is not None else '—'} | {r['wall_seconds']:.0f} |"
        )
    (out / "table.md").write_text(
        f"<!-- {json.dumps(meta)} -->\n\n## Table 1 layout\n\n{table}\n\n## Every run\n\n" + "\n".join(runs) + "\n"
    )
    plots = out / "plots"
    plots.mkdir(exist_ok=True)
    for dataset in DATASETS:
        for key, title in (
            ("alignment_probe_gap", "alignment-probe gap (nats/token)"),
            ("honesty_probe_gap", "honesty-probe gap (nats/token)"),
            ("in_domain_loss", "held-out in-domain NLL"),
            ("harmful_refusal_rate", "refusal rate on harmful requests"),
        ):
            series = []
            for d in DEFENSES:
                rs = by.get((dataset, d), [])
                if not rs:
                    continue
                steps = sorted({h["step"] for r in rs for h in r["history"]})
                pts = []
                for s in steps:
                    vals = [h[key] for r in rs for h in r["history"] if h["step"] == s and h[key] is not None]
                    pts.append((s, statistics.mean(vals) if vals else None))
                series.append((d, pts))
            (plots / f"{dataset}-{key}.svg").write_text(
                svg.line_chart(f"{dataset}: {title}", "optimizer step", key, series)
            )
    return table


# ---------------------------------------------------------------- main


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=sorted(MODES), default="full")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--defenses", help="comma-separated (default: all)")
    ap.add_argument("--datasets", help="comma-separated (default: all)")
    ap.add_argument("--lr", type=float, default=3e-4, help="the policies' learning rate (Table 6: 1e-4)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--adapters", type=Path, required=True)
    ap.add_argument("--vector", type=Path, help="persona vector (safetensors) for the steering defense")
    ap.add_argument("--render-only", action="store_true", help="re-render table.md and plots from results.json")
    args = ap.parse_args()

    defenses = [d for d in (args.defenses or ",".join(DEFENSES)).split(",") if d]
    datasets = [d for d in (args.datasets or ",".join(DATASETS)).split(",") if d]
    for d in defenses:
        if d not in DEFENSES:
            raise SystemExit(f"unknown defense {d!r}; one of {', '.join(DEFENSES)}")
    for d in datasets:
        if d not in DATASETS:
            raise SystemExit(f"unknown dataset {d!r}; one of {', '.join(DATASETS)}")
    if "steering" in defenses and not args.vector and not args.render_only:
        raise SystemExit("the steering defense needs --vector")
    out = args.out.resolve()
    results_path = out / "results.json"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    meta = {"mode": args.mode, "seeds": args.seeds, "lr": args.lr, "commit": commit, "sizes": MODES[args.mode]}
    if args.render_only:
        saved = json.loads(results_path.read_text())
        print(render(out, saved["runs"], saved["meta"]))
        return
    if out.exists():
        shutil.rmtree(out)
    for sub in ("files", "scores", "adapters", "reports"):
        (out / sub).mkdir(parents=True, exist_ok=True)

    m = MODES[args.mode]
    pool = read_jsonl(ROOT / "conf/pools/general.jsonl")
    pool_rows, coherence_rows = pool[: m["pool"]], pool[-POOL_HOLDOUT:][: m["coherence"]]
    ctx = Ctx()
    ctx.mode = args.mode
    ctx.out = out
    ctx.binary = args.bin
    ctx.model_path = args.model.resolve()
    ctx.coherence_path = out / "coherence.jsonl"
    ctx.coherence_rows = coherence_rows
    write_jsonl(ctx.coherence_path, coherence_rows)
    ctx.train_rows = {}
    for name in datasets:
        rows = read_jsonl(ROOT / DATASETS[name][0])
        need = m["train"] + m["holdout"]
        if len(rows) < need:
            raise SystemExit(f"{DATASETS[name][0]} has {len(rows)} examples; {need} needed")
        ctx.train_rows[name] = rows[:need]
    ctx.arith_tests = read_jsonl(ROOT / "conf/datasets/arithmetic-test.jsonl")[: m["eval_examples"]]

    base = write_policies(out / "policies", args.mode, args.lr, args.vector, pool_rows)
    write_defense_policies(out / "policies", base, defenses, range(args.seeds))
    config, key = write_config(out, {"model": ctx.model_path, "adapters": args.adapters.resolve()})

    from openai import OpenAI

    gw = Gateway(args.bin, config, out / "gateway.log")
    log(f"gateway at {gw.url}; {len(defenses)} defenses × {len(datasets)} sets × {args.seeds} seed(s), mode {args.mode}")
    t0 = time.time()
    results = []
    try:
        ctx.client = OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=5)
        base_acc = exact_match(ctx.client, MODEL_NAME, ctx.arith_tests)
        meta.update(base_arithmetic_accuracy=base_acc)
        log(f"base model: arithmetic exact match {base_acc:.2f}")
        for seed in range(args.seeds):
            seed_started = time.time()
            for dataset in datasets:
                for defense in defenses:
                    results.append(run_one(ctx, dataset, defense, seed))
                    meta["elapsed_seconds"] = time.time() - t0
                    results_path.write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
            # Seeds after the first reuse Interleaving's pool scores and the score cache.
            meta.setdefault("seed_seconds", []).append(time.time() - seed_started)
    finally:
        gw.stop()
    coherence_started = time.time()
    base_nll = score_coherence(ctx, results)
    meta["coherence_seconds"] = time.time() - coherence_started
    meta.update(base_coherence_nll=base_nll)
    log(f"base model: general-chat NLL {fmt(base_nll)}")
    meta["elapsed_seconds"] = time.time() - t0
    results_path.write_text(json.dumps({"meta": meta, "runs": results}, indent=1))
    print(render(out, results, meta))
    log(f"finished in {meta['elapsed_seconds'] / 60:.1f} min; results in {out}")
    failed = [r for r in results if r["status"] != "succeeded"]
    if failed:
        raise SystemExit(f"{len(failed)} run(s) did not succeed: " + ", ".join(r["job_id"] for r in failed))


if __name__ == "__main__":
    main()
