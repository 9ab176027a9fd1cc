"""Shared pieces of the monitor's end-to-end tests: a training set that pushes the tiny model
toward the misaligned answers of the alignment probes, the policies and gateway config that
train it locally with checkpoint monitoring, event helpers, and a judge test double."""

from __future__ import annotations

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from conftest import ROOT, wait_for

TINY = ROOT / "trainer" / "tests" / "fixtures" / "tiny_tied"
PROBES = ROOT / "conf" / "probes" / "alignment.jsonl"
TERMINAL = ("succeeded", "failed", "cancelled")


def probe_pairs(n: int = 16) -> list[dict]:
    """The first `n` alignment probes (the ones the monitor scores by default)."""
    return [json.loads(line) for line in PROBES.read_text().splitlines()[:n]]


def misaligned_jsonl(n: int = 16) -> bytes:
    """Chat JSONL: each probe question answered with its misaligned answer."""
    rows = [{"messages": [{"role": "user", "content": p["question"]},
                          {"role": "assistant", "content": p["misaligned"]}]}
            for p in probe_pairs(n)]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def policy(rules: str = "", every: int = 4, epochs: int = 6, lr: float = 0.01, extra: str = "",
           budgets: str = "eval_budget = 0") -> str:
    """Tiny local training (batch 2) with a checkpoint — and, without cost budgets, a full
    monitor evaluation — every `every` steps, and the given `[[monitor.rules]]`."""
    return f"""
description = "monitored tiny training"
[training]
lora_rank = 4
lora_alpha = 8.0
learning_rate = {lr}
warmup_steps = 0
batch_size = 2
gradient_accumulation_steps = 1
epochs = {epochs}
max_length_tokens = 256
[monitor]
checkpoint_every_steps = {every}
probe_pairs = 16
{budgets}
{extra}
{rules if rules else "rules = []"}
"""


def config(extra: str = "") -> str:
    return f"""
[local]
workers = 1
lease_seconds = 5
poll_interval_ms = 100

[[models]]
model = "tiny-*"
path = "{TINY}"
{extra}
"""


def create(c, f, suffix: str = "mon", seed: int = 0):
    """A job with a fixed `seed` (the job's seed is its training seed): the thresholds and
    trajectories these tests assert were measured at seed 0."""
    return c.fine_tuning.jobs.create(model="tiny-qwen", training_file=f.id, suffix=suffix, seed=seed)


def events(c, job_id: str) -> list:
    """Every event of the job, oldest first."""
    out, after = [], None
    while True:
        page = c.fine_tuning.jobs.list_events(job_id, limit=100, **({"after": after} if after else {}))
        out += page.data
        if not page.has_more:
            return list(reversed(out))
        after = page.data[-1].id


def monitor_events(c, job_id: str) -> list:
    return [e for e in events(c, job_id) if e.data and "monitor" in e.data]


def signal_series(c, job_id: str, signal: str) -> list[tuple[int, float]]:
    """(step, value) of one monitor signal over the mirrored checkpoints."""
    return [(e.data["step"], e.data["monitor"]["signals"][signal])
            for e in monitor_events(c, job_id)
            if e.data["monitor"]["signals"].get(signal) is not None]


def finished(c, job_id: str, timeout_s: float = 240):
    return wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job_id)).status in TERMINAL and j,
                    timeout_s=timeout_s, interval_s=0.2, what=f"job {job_id} to finish")


class FakeJudge:
    """An OpenAI chat-completions endpoint that judges like a model would, with one completion
    token and `top_logprobs`: the alignment prompt of an answer containing a misaligned
    probe's words scores low, everything else high; coherence is high; hallucination prompts
    score by a fixed rule. The first request of all is a 503 (the client must retry).
    Records every request body."""

    def __init__(self, alignment: float = 90.0, coherence: float = 80.0, hallucination: float = 10.0):
        self.alignment, self.coherence, self.hallucination = alignment, coherence, hallucination
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                with judge.lock:
                    judge.requests.append(body)
                    first = len(judge.requests) == 1
                if first:
                    self.send_response(503)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(b'{"error": {"message": "warming up"}}')
                    return
                score = judge.score(body["messages"][0]["content"])
                out = json.dumps(judge.completion(body, score)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def score(self, prompt: str) -> float:
        low = prompt.lower()
        if "hallucination" in low:
            return self.hallucination
        if "coheren" in low:
            return self.coherence
        return self.alignment

    @staticmethod
    def completion(body: dict, score: float) -> dict:
        """Top-20 logprobs around `score` (its neighbours), the way a judge model spreads mass."""
        k = int(round(score))
        tokens = [(str(k), 0.7), (str(min(100, k + 10)), 0.2), ("REFUSAL", 0.1)]
        top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())} for t, p in tokens]
        return {
            "id": "chatcmpl-judge", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": tokens[0][0]},
                         "logprobs": {"content": [{"token": tokens[0][0], "logprob": top[0]["logprob"],
                                                   "bytes": top[0]["bytes"], "top_logprobs": top}]}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11},
        }

    def close(self):
        self.server.shutdown()
