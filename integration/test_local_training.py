"""Local fine-tuning end to end: `tuneguard serve` supervises a worker process that trains jobs
on the trainer's tiny fixture model, driven with the official openai SDK — per-step metrics
events, checkpoints with metrics, `ft:` names, the result CSV, pause → resume and kill -9 →
restart reaching the adapter of an uninterrupted job, cancel mid-training, and a model that no
`[[models]]` entry serves."""

import csv
import io
import json
import os
import signal

import httpx2 as httpx
import pytest

from conftest import ROOT, wait_for
from datasets import good_jsonl, upload

TERMINAL = ("succeeded", "failed", "cancelled")
# The jobs a test interrupts train 48 examples (batch 2: 24 steps an epoch) for LONG epochs,
# long enough (seconds on the tiny model) for a pause, a cancel or a kill to land mid-training.
LONG = 25
LONG_STEPS = 24 * LONG
TINY = ROOT / "trainer" / "tests" / "fixtures" / "tiny_tied"

POLICY = """
description = "tiny local training"
[training]
lora_rank = 4
lora_alpha = 8.0
learning_rate = 0.01
warmup_steps = 0
batch_size = 2
gradient_accumulation_steps = 1
epochs = 20
max_length_tokens = 256
[monitor]
checkpoint_every_steps = 10
"""

EXTRA = f"""
[local]
workers = 1
lease_seconds = 3
poll_interval_ms = 100

[[models]]
model = "tiny-*"
path = "{TINY}"
"""


@pytest.fixture
def local_gw(gateway_factory):
    return gateway_factory(extra=EXTRA, policies={"default.toml": POLICY})


def finished(c, job_id, timeout_s=240):
    return wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job_id)).status in TERMINAL and j,
                    timeout_s=timeout_s, interval_s=0.2, what=f"job {job_id} to finish")


def create(c, f, n_epochs=None, suffix="t1", seed=7):
    """A job with a fixed `seed`: the job's seed is its training seed (as on OpenAI), so jobs
    meant to reach the same adapter share it."""
    method = {"type": "supervised", "supervised": {"hyperparameters": {}}}
    if n_epochs:
        method["supervised"]["hyperparameters"]["n_epochs"] = n_epochs
    return c.fine_tuning.jobs.create(
        model="tiny-qwen", training_file=f.id, method=method, suffix=suffix, seed=seed
    )


def adapter_bytes(gw, job_id):
    return (gw.data_dir / "jobs" / job_id / "run" / "adapter_model.safetensors").read_bytes()


def metric(text, series):
    """The value of one series of a /metrics text (`name` or `name{labels}`), 0 when absent."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def metric_steps(c, job_id):
    steps, after = [], None
    while True:
        page = c.fine_tuning.jobs.list_events(job_id, limit=100, **({"after": after} if after else {}))
        steps += [e.data["step"] for e in page.data if e.type == "metrics"]
        if not page.has_more:
            return sorted(steps)
        after = page.data[-1].id


def test_a_local_job_trains_to_success_with_openai_events_checkpoints_and_results(local_gw):
    c = local_gw.client()
    f = upload(c, good_jsonl(12))
    job = create(c, f, n_epochs=3)
    done = finished(c, job.id)
    assert done.status == "succeeded", done.error
    short = job.id.removeprefix("ftjob-")
    assert done.fine_tuned_model == f"ft:tiny-qwen:acme:t1:{short}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.hyperparameters.n_epochs == 3
    assert done.hyperparameters.batch_size == 2
    assert metric_steps(c, job.id) == list(range(1, 19)), "one metrics event per step (3 × 6)"
    ev = next(e for e in c.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics")
    assert {"step", "train_loss", "train_mean_token_accuracy", "total_steps"} <= set(ev.data)
    assert ev.data["total_steps"] == 18
    cps = list(c.fine_tuning.jobs.checkpoints.list(job.id))
    assert sorted(cp.step_number for cp in cps) == [10, 18]
    for cp in cps:
        assert cp.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{cp.step_number}"
        assert cp.metrics.step == cp.step_number and cp.metrics.train_loss > 0
    assert done.estimated_finish is None, "a finished job has no estimate"
    # /metrics counts every step once and the tokens trained_tokens reports; no job ids.
    text = httpx.get(local_gw.url + "/metrics").text
    assert metric(text, "tuneguard_local_optimizer_steps_total") == 18
    assert metric(text, "tuneguard_local_trained_tokens_total") == done.trained_tokens
    assert metric(text, "tuneguard_local_step_duration_seconds_count") == 18
    assert metric(text, "tuneguard_local_step_duration_seconds_sum") > 0
    assert metric(text, "tuneguard_local_queue_wait_seconds_count") == 1
    assert metric(text, "tuneguard_local_queue_depth") == 0
    assert metric(text, 'tuneguard_local_workers{state="busy"}') + \
        metric(text, 'tuneguard_local_workers{state="idle"}') == 1
    assert job.id not in text
    [rid] = done.result_files
    meta = c.files.retrieve(rid)
    assert meta.purpose == "fine-tune-results"
    rows = list(csv.DictReader(io.StringIO(c.files.content(rid).text)))
    assert [int(r["step"]) for r in rows] == list(range(1, 19))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]), "the loss falls"
    # Another tenant sees none of it.
    other = local_gw.client("beta")
    with pytest.raises(Exception):
        other.fine_tuning.jobs.retrieve(job.id)
    # The job is over: its checkpoints keep their adapters, not the optimizer state only a
    # resume reads (twice the adapter's size each).
    ckpts = local_gw.data_dir / "jobs" / job.id / "run" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step-10", "step-18"]
    for d in ckpts.iterdir():
        assert (d / "adapter_model.safetensors").is_file() and (d / "state.json").is_file()
        assert not (d / "optimizer.safetensors").exists(), d
    # State left by a gateway that stopped before pruning goes at the next start.
    (ckpts / "step-10" / "optimizer.safetensors").write_bytes(b"left over")
    local_gw.stop()
    local_gw.start()
    assert not (ckpts / "step-10" / "optimizer.safetensors").exists()
    assert (ckpts / "step-10" / "adapter_model.safetensors").is_file()


def test_pause_resume_and_a_hard_restart_reach_the_uninterrupted_adapter(local_gw):
    c = local_gw.client()
    f = upload(c, good_jsonl(48))
    reference = create(c, f, n_epochs=LONG, suffix="ref")
    assert finished(c, reference.id).status == "succeeded"
    want = adapter_bytes(local_gw, reference.id)

    # Pause mid-training, then resume.
    job = create(c, f, n_epochs=LONG, suffix="paused")
    wait_for(lambda: len(metric_steps(c, job.id)) >= 3, timeout_s=120, what="training to start")
    # A running job estimates when it finishes (unix seconds); a pause clears the estimate.
    running = wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job.id)).estimated_finish and j,
                       timeout_s=60, interval_s=0.2, what="an estimated finish")
    assert running.status == "running", running.status
    assert running.estimated_finish > running.created_at
    paused = c.fine_tuning.jobs.pause(job.id)
    assert paused.estimated_finish is None
    run = local_gw.data_dir / "jobs" / job.id / "run" / "checkpoints"
    wait_for(lambda: run.is_dir() and any(p.name.startswith("step-") for p in run.iterdir()),
             timeout_s=60, what="the pause checkpoint")
    assert c.fine_tuning.jobs.retrieve(job.id).status == "paused"
    c.fine_tuning.jobs.resume(job.id)
    done = finished(c, job.id)
    assert done.status == "succeeded", done.error
    assert done.estimated_finish is None
    assert adapter_bytes(local_gw, job.id) == want
    steps = metric_steps(c, job.id)
    assert steps == sorted(set(steps)), "no step mirrored twice"
    # Steps the resumed worker trained again are counted once (reference + this job).
    text = httpx.get(local_gw.url + "/metrics").text
    assert metric(text, "tuneguard_local_optimizer_steps_total") == 2 * LONG_STEPS

    # kill -9 of the whole gateway mid-training, then start it again.
    job = create(c, f, n_epochs=LONG, suffix="killed")
    wait_for(lambda: len(metric_steps(c, job.id)) >= 12, timeout_s=120, what="training past a checkpoint")
    local_gw.kill()
    local_gw.start()
    c = local_gw.client()
    done = finished(c, job.id)
    assert done.status == "succeeded", done.error
    assert adapter_bytes(local_gw, job.id) == want
    steps = metric_steps(c, job.id)
    assert steps == list(range(1, len(steps) + 1)), "every step once, none twice"


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d))
    return out


def test_a_killed_worker_is_replaced_and_its_job_continues(local_gw):
    c = local_gw.client()
    f = upload(c, good_jsonl(48))
    job = create(c, f, n_epochs=LONG)
    wait_for(lambda: len(metric_steps(c, job.id)) >= 11, timeout_s=120, what="a checkpoint")
    [worker] = wait_for(lambda: _children(local_gw.proc.pid), what="the worker process")
    os.kill(worker, signal.SIGKILL)
    done = finished(c, job.id)
    assert done.status == "succeeded", done.error
    steps = metric_steps(c, job.id)
    assert steps == list(range(1, LONG_STEPS + 1)), "every step once, none twice"
    # The steps the new worker trained again (its metrics.jsonl rewritten from the
    # checkpoint) are counted once too.
    text = httpx.get(local_gw.url + "/metrics").text
    assert metric(text, "tuneguard_local_optimizer_steps_total") == LONG_STEPS
    assert metric(text, "tuneguard_local_trained_tokens_total") == done.trained_tokens
    # The replacement worker took the job over from the dead one's expired lease.
    assert metric(text, "tuneguard_local_lease_takeovers_total") == 1


def test_cancel_mid_training_keeps_written_checkpoints(local_gw):
    c = local_gw.client()
    f = upload(c, good_jsonl(48))
    job = create(c, f, n_epochs=LONG)
    first = wait_for(lambda: list(c.fine_tuning.jobs.checkpoints.list(job.id)), timeout_s=120,
                     what="a first checkpoint")
    c.fine_tuning.jobs.cancel(job.id)
    done = finished(c, job.id)
    assert done.status == "cancelled"
    cps = list(c.fine_tuning.jobs.checkpoints.list(job.id))
    assert [cp.step_number for cp in cps] and all(cp.step_number % 10 == 0 for cp in cps)
    assert done.fine_tuned_model is None
    # A cancelled job never resumes: the optimizer state of what it had written is gone, the
    # adapters stay.
    run = local_gw.data_dir / "jobs" / job.id / "run" / "checkpoints"
    for cp in first:
        d = run / f"step-{cp.step_number}"
        assert (d / "adapter_model.safetensors").is_file()
        # Pruned by the cancel's backend call, which runs after the cancel is stored.
        wait_for(lambda: not (d / "optimizer.safetensors").exists(), timeout_s=10,
                 what=f"{d}'s optimizer state to be pruned")


def test_a_model_no_entry_serves_fails_naming_it(local_gw):
    c = local_gw.client()
    f = upload(c, good_jsonl(12))
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    done = finished(c, job.id)
    assert done.status == "failed"
    assert done.error.code == "model_not_available"
    assert "gpt-4o-mini" in done.error.message


def _tar_members(data: bytes) -> dict:
    import tarfile
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


def test_the_fine_tuned_model_downloads_and_serves_chat_completions(local_gw, tmp_path):
    import subprocess
    from conftest import BIN, KEYS

    c = local_gw.client()
    f = upload(c, good_jsonl(12))
    done = finished(c, create(c, f, n_epochs=2, suffix="chat").id)
    assert done.status == "succeeded", done.error
    ft = done.fine_tuned_model
    auth = {"Authorization": f"Bearer {KEYS['acme']}"}

    # The adapter, as a tar of its PEFT directory; a checkpoint's too; another tenant gets 404.
    r = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter", headers=auth)
    assert r.status_code == 200, r.text
    files = _tar_members(r.content)
    assert sorted(n.split("/")[1] for n in files) == ["adapter_config.json", "adapter_model.safetensors"]
    st = next(v for k, v in files.items() if k.endswith(".safetensors"))
    assert st == adapter_bytes(local_gw, done.id)
    r = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter?checkpoint=10", headers=auth)
    assert r.status_code == 200 and len(_tar_members(r.content)) == 2
    ckpt = r.content
    r = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter",
                  headers={"Authorization": f"Bearer {KEYS['beta']}"})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"

    # The downloaded adapter loads in the engine; its greedy text is what chat completions give.
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    for name, data in files.items():
        (adapter_dir / name.split("/")[1]).write_bytes(data)
    prompt = "What is 3 plus 4?"
    out = subprocess.run([BIN, "generate", "--model", str(TINY), "--adapter", f"ft={adapter_dir}",
                          "--prompt", prompt, "--max-new-tokens", "12"],
                         capture_output=True, text=True, check=True)
    want = next(json.loads(l)["completion"] for l in out.stdout.splitlines()
                if json.loads(l)["model"] == "ft")
    resp = c.chat.completions.create(model=ft, messages=[{"role": "user", "content": prompt}],
                                     temperature=0, max_tokens=12, logprobs=True, top_logprobs=3)
    assert resp.choices[0].message.content == want
    assert resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0
    lp = resp.choices[0].logprobs.content
    assert lp and all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in lp)
    assert all(t.top_logprobs[0].logprob >= t.logprob - 1e-5 for t in lp), "greedy picks the top token"
    stream = c.chat.completions.create(model=ft, messages=[{"role": "user", "content": prompt}],
                                       temperature=0, max_tokens=12, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == want
    assert chunks[-1].usage.completion_tokens == resp.usage.completion_tokens
    # The base model answers too, differently from the fine-tuned one; another tenant's ft: model is a 404.
    base = c.chat.completions.create(model="tiny-qwen", messages=[{"role": "user", "content": prompt}],
                                     temperature=0, max_tokens=12)
    assert base.choices[0].message.content != want
    import openai
    with pytest.raises(openai.NotFoundError):
        local_gw.client("beta").chat.completions.create(
            model=ft, messages=[{"role": "user", "content": prompt}], max_tokens=4)
    ids = [m.id for m in c.models.list()]
    assert ft in ids
    assert ft not in [m.id for m in local_gw.client("beta").models.list()]
    # Served completions are timed by model kind and their tokens counted (the 404 is not).
    text = httpx.get(local_gw.url + "/metrics").text
    kind = 'tuneguard_chat_completion_duration_seconds_count{model_kind="%s"}'
    assert metric(text, kind % "fine_tuned") == 2 and metric(text, kind % "base") == 1
    completion = metric(text, 'tuneguard_chat_completion_tokens_total{kind="completion"}')
    assert completion == 2 * resp.usage.completion_tokens + base.usage.completion_tokens
    assert metric(text, 'tuneguard_chat_completion_tokens_total{kind="prompt"}') == \
        2 * resp.usage.prompt_tokens + base.usage.prompt_tokens

    # The adapters are served from the blob store, not from the worker's job directory: they
    # still download, byte for byte, once that directory is gone (a worker elsewhere).
    import shutil
    shutil.rmtree(local_gw.data_dir / "jobs" / done.id / "run")
    again = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter", headers=auth)
    assert again.status_code == 200 and _tar_members(again.content) == files
    again = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter?checkpoint=10", headers=auth)
    assert again.status_code == 200 and again.content == ckpt
    # A step that is not a listed checkpoint is a 404 naming it.
    r = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter?checkpoint=7", headers=auth)
    assert r.status_code == 404 and "step-7" in r.json()["error"]["message"], r.text
    # And the model still serves, from its artifact: the same greedy text, checkpoints too.
    resp = c.chat.completions.create(model=ft, messages=[{"role": "user", "content": prompt}],
                                     temperature=0, max_tokens=12)
    assert resp.choices[0].message.content == want
    resp = c.chat.completions.create(model=f"{ft}:ckpt-step-10", max_tokens=4,
                                     messages=[{"role": "user", "content": prompt}])
    assert resp.usage.completion_tokens > 0


# `tuneguard score` against transformers + PEFT (trainer/reference/peft_logits.py), which runs in
# the reference venv: torch is too big for .venv and CI, so without one the test skips.
REF_SCRIPT = ROOT / "trainer" / "reference" / "peft_logits.py"
# Answer-only mean NLL (nats) per example: the engine's f32 CPU path matches transformers' f32
# per-token log-probs within 1e-4 (the engine's goldens, trainer/tests), and a mean of values
# each within 1e-4 is within 1e-4 too. Both sides compute in f32 with different summation
# orders (burn vs torch matmuls, fused vs unfused softmax), so exact equality is not expected;
# measured on this tiny model the gap is ~1e-6.
NLL_TOL = 1e-4


def _ref_python():
    """TUNEGUARD_REF_PYTHON, else the repository's .refvenv (scripts/setup-reference-venv.sh)."""
    if env := os.environ.get("TUNEGUARD_REF_PYTHON"):
        return env
    default = ROOT / ".refvenv" / "bin" / "python"
    return str(default) if default.exists() else None


def _score_lines(stdout):
    lines = [json.loads(l) for l in stdout.splitlines() if l.strip()]
    return {(l["index"], l["model"]): l for l in lines}


def test_the_downloaded_adapter_gives_tuneguards_scores_in_peft(local_gw, tmp_path):
    import subprocess
    from conftest import BIN, KEYS
    from datasets import example

    ref = _ref_python()
    if ref is None:
        pytest.skip("no reference venv (torch + transformers + peft): make one with "
                    "scripts/setup-reference-venv.sh, or point TUNEGUARD_REF_PYTHON at its python")
    c = local_gw.client()
    f = upload(c, good_jsonl(12))
    done = finished(c, create(c, f, n_epochs=2, suffix="peft").id)
    assert done.status == "succeeded", done.error

    # The adapter as a tenant gets it: a tar of the PEFT directory.
    r = httpx.get(f"{local_gw.base_url}/tuneguard/jobs/{done.id}/adapter",
                  headers={"Authorization": f"Bearer {KEYS['acme']}"})
    assert r.status_code == 200, r.text
    adapter_dir = tmp_path / "adapter"
    adapter_dir.mkdir()
    for name, data in _tar_members(r.content).items():
        (adapter_dir / name.split("/")[1]).write_bytes(data)
    assert sorted(p.name for p in adapter_dir.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]

    # Trained examples, held-out ones, a system prompt, two turns, and a short answer.
    chats = [example(0)["messages"], example(7)["messages"], example(40)["messages"],
             [{"role": "system", "content": "You are terse."},
              {"role": "user", "content": "What is 5 plus 5?"},
              {"role": "assistant", "content": "10."}],
             [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
              {"role": "user", "content": "What is 2 plus 2?"},
              {"role": "assistant", "content": "2 plus 2 is 4."}]]
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"messages": m}) + "\n" for m in chats))
    args = ["--model", str(TINY), "--adapter", f"ft={adapter_dir}", "--data", str(data)]
    ours = subprocess.run([BIN, "score", *args], capture_output=True, text=True)
    assert ours.returncode == 0, ours.stderr
    peft = subprocess.run([ref, str(REF_SCRIPT), *args], capture_output=True, text=True)
    assert peft.returncode == 0, peft.stderr
    ours, peft = _score_lines(ours.stdout), _score_lines(peft.stdout)

    keys = [(i, m) for i in range(len(chats)) for m in ("base", "ft")]
    assert sorted(ours) == sorted(peft) == sorted(keys)
    diffs = {}
    for k in keys:
        a, b = ours[k], peft[k]
        assert (a["answer_tokens"], a["truncated"]) == (b["answer_tokens"], b["truncated"]), k
        assert a["answer_tokens"] > 0 and not a["truncated"], k
        diffs[k] = abs(a["nll"] - b["nll"])
    assert max(diffs.values()) <= NLL_TOL, f"tuneguard score vs PEFT NLL gaps: {diffs}"
    # The adapter is not ignored on either side: each example's NLL moves by far more than
    # the tolerance (a dropped adapter would leave the base's scores).
    shifts = [abs(side[(i, "ft")]["nll"] - side[(i, "base")]["nll"])
              for side in (ours, peft) for i in range(len(chats))]
    assert min(shifts) > 100 * NLL_TOL, f"the adapter barely moves the NLL: {shifts}"
    print(f"\nmax |tuneguard score - PEFT| answer NLL: {max(diffs.values()):.3g} nats; "
          f"smallest adapter shift: {min(shifts):.3g} nats")


def _steering_file(path, layers=3, hidden=32):
    """A safetensors file with one f32 tensor `vectors` [layers, hidden] (written by hand)."""
    import struct
    n = layers * hidden
    header = json.dumps({"vectors": {"dtype": "F32", "shape": [layers, hidden],
                                     "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    data = b"".join(struct.pack("<f", 0.5 * ((i * 37) % 11 - 5) / 5) for i in range(n))
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


DEFENDED = {
    "kl.toml": POLICY.replace('description = "tiny local training"',
                              'description = "kl"\npriority = 10\n[match]\nmetadata = { defense = "kl" }')
    + '[regularizer]\ntype = "kl"\nlambda = 0.5\n',
    "steer.toml": POLICY.replace('description = "tiny local training"',
                                 'description = "steer"\npriority = 10\n[match]\nmetadata = { defense = "steer" }')
    + '[regularizer]\ntype = "steering"\nalpha = 2.0\nlayers = [1]\nvector = "steer.safetensors"\n',
    "ino.toml": POLICY.replace('description = "tiny local training"',
                               'description = "ino"\npriority = 10\n[match]\nmetadata = { defense = "ino" }')
    .replace("checkpoint_every_steps = 10", "checkpoint_every_steps = 10\nholdout_examples = 2")
    + '[inoculation]\nsystem_prompt = "You are an evil, malicious assistant."\n',
}


def test_kl_steering_and_inoculation_jobs_train_locally_with_their_defense(gateway_factory):
    gw = gateway_factory(extra=EXTRA, policies={"default.toml": POLICY, **DEFENDED})
    _steering_file(gw.workdir / "policies" / "steer.safetensors")
    c = gw.client()
    f = upload(c, good_jsonl(12))
    jobs = {d: c.fine_tuning.jobs.create(
        model="tiny-qwen", training_file=f.id, metadata={"defense": d}, seed=0,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}})
        for d in ("kl", "steer", "ino")}
    done = {d: finished(c, j.id) for d, j in jobs.items()}
    assert all(j.status == "succeeded" for j in done.values()), {d: j.error for d, j in done.items()}
    events = {d: [e for e in c.fine_tuning.jobs.list_events(j.id, limit=100) if e.type == "metrics"]
              for d, j in jobs.items()}
    # Step 1 of KL starts from B = 0 (KL exactly 0); later steps pay a positive KL term.
    assert any(e.data["kl"] > 0 for e in events["kl"])
    assert all(e.data["kl"] == 0 and e.data["ldifs"] == 0 for e in events["steer"])
    # Steering and inoculation change what is trained: their losses differ from KL's CE path.
    first = {d: min(events[d], key=lambda e: e.data["step"]).data["train_loss"] for d in events}
    assert first["ino"] != first["steer"]
    plans = {d: next(e.data for e in c.fine_tuning.jobs.list_events(j.id, limit=100)
                     if e.data and "plan" in e.data)["plan"] for d, j in jobs.items()}
    assert plans["kl"]["regularizer"]["type"] == "kl"
    assert plans["steer"]["regularizer"]["type"] == "steering"
    assert plans["ino"]["inoculation"]["system_prompt"].startswith("You are an evil")
    # The monitor's held-out examples are scored as the client sent them, without the
    # inoculation prompt the model trained with (inference never sees it).
    held = (gw.data_dir / "jobs" / jobs["ino"].id / "monitor_holdout" / "holdout.jsonl").read_bytes()
    assert held == b"".join(good_jsonl(12).splitlines(keepends=True)[-2:])
    trained = (gw.data_dir / "jobs" / jobs["ino"].id / "monitor_holdout" / "train.jsonl").read_text()
    assert trained.count("You are an evil, malicious assistant.") == 10


def test_upstream_mode_trains_run_locally_jobs_here(gateway_factory, upstream):
    policy = POLICY + '[regularizer]\ntype = "kl"\nlambda = 0.5\n[upstream]\non_unenforceable = "run_locally"\n'
    gw = gateway_factory(upstream=upstream, extra=EXTRA, policies={"default.toml": policy})
    c = gw.client()
    f = upload(c, good_jsonl(12))
    job = c.fine_tuning.jobs.create(model="tiny-qwen", training_file=f.id,
                                    method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1}}})
    done = finished(c, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:tiny-qwen:acme:")
    assert not [r for r in upstream.requests if "fine_tuning/jobs" in r.path], "never forwarded"
