"""The chaos run (issue 13): `jobs` concurrent local jobs across two `serve` replicas
(`workers = 0`) and two remote `tuneguard worker` processes, sharing only PostgreSQL and an S3
bucket, while a seeded loop kills a random one of the four with SIGKILL every `kill_every_s`
(± half) and starts it again. Every job must succeed with each optimizer step mirrored once,
unique checkpoints and events, and the adapter of an uninterrupted run of the same job (same
data, hyperparameters and seed) trained before the chaos starts.

Run by `integration/test_chaos.py` (short) and `scripts/chaos.py` (long, with its own servers).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import openai

from conftest import Gateway, render_config
from datasets import good_jsonl, upload
from machines import Worker, adapter, models_toml

TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class ChaosReport:
    jobs: list[str]
    kills: list[str] = field(default_factory=list)
    seconds: float = 0.0
    steps_per_job: int = 0


class Cluster:
    def __init__(self, root: Path, env: dict, policy: str, model: Path):
        self.replicas = []
        for name in ("replica-a", "replica-b"):
            work = root / name
            pol = work / "policies"
            pol.mkdir(parents=True)
            (pol / "default.toml").write_text(policy)
            cfg = work / "tuneguard.toml"
            cfg.write_text(render_config(work / "data", pol, None, models_toml(model, 0)))
            self.replicas.append(Gateway(work, cfg, env).start())
        self.workers = [Worker(root / f"worker-{i}", env, policy, model) for i in (1, 2)]

        self._clients: dict = {}

    def live(self) -> Gateway:
        """A replica that is running now."""
        return next(gw for gw in self.replicas if gw.proc is not None)

    def call(self, fn, tries: int = 200):
        """`fn(client)` on whichever replica answers (one may be down for a moment)."""
        last = None
        for k in range(tries):
            gw = self.replicas[k % 2]
            if gw.proc is None:
                continue
            # A restarted replica listens on a new port: one client per start.
            key = (k % 2, gw.starts)
            if key not in self._clients:
                self._clients[key] = gw.client(max_retries=0, timeout=30)
            try:
                return fn(self._clients[key])
            except (openai.APIConnectionError, openai.InternalServerError) as e:
                last = e
                time.sleep(0.05)
        raise AssertionError(f"no replica answered: {last}")

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        for gw in self.replicas:
            if gw.proc is not None:
                assert gw.stop() == 0, gw.stderr()


def _all(page_fn):
    out, after = [], None
    while True:
        page = page_fn(after)
        out += page.data
        if not page.has_more:
            return out
        after = page.data[-1].id


def run(root: Path, env: dict, policy: str, model: Path, *, jobs: int, epochs: int,
        kill_every_s: float, seed: int, timeout_s: float, log=print) -> ChaosReport:
    rng = random.Random(seed)
    cluster = Cluster(root, env, policy, model)
    try:
        f = cluster.call(lambda c: upload(c, good_jsonl(48)))

        def create(c, suffix):
            method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}}
            return c.fine_tuning.jobs.create(model="tiny-qwen", training_file=f.id, method=method,
                                             suffix=suffix, seed=7).id

        def wait(ids, deadline, during=None):
            while True:
                states = {i: cluster.call(lambda c, i=i: c.fine_tuning.jobs.retrieve(i)) for i in ids}
                if all(j.status in TERMINAL for j in states.values()):
                    return states
                assert time.monotonic() < deadline, {i: j.status for i, j in states.items()}
                if during:
                    during()
                else:
                    time.sleep(0.2)

        ref = cluster.call(lambda c: create(c, "reference"))
        [done] = wait([ref], time.monotonic() + timeout_s).values()
        assert done.status == "succeeded", done.error
        want = adapter(cluster.live(), ref)
        steps = len([e for e in _all(lambda a: cluster.call(
            lambda c: c.fine_tuning.jobs.list_events(ref, limit=100, **({"after": a} if a else {}))))
            if e.type == "metrics"])
        report = ChaosReport(jobs=[], steps_per_job=steps)
        ids = [cluster.call(lambda c, k=k: create(c, f"chaos{k}")) for k in range(jobs)]
        report.jobs = ids
        procs = [("replica-a", cluster.replicas[0]), ("replica-b", cluster.replicas[1]),
                 ("worker-1", cluster.workers[0]), ("worker-2", cluster.workers[1])]
        next_kill = [time.monotonic() + rng.uniform(0.5, 1.5) * kill_every_s]
        t0 = time.monotonic()

        def chaos():
            if time.monotonic() >= next_kill[0]:
                name, p = rng.choice(procs)
                p.kill()
                report.kills.append(name)
                log(f"chaos: killed {name} at {time.monotonic() - t0:.1f}s")
                p.start()
                next_kill[0] = time.monotonic() + rng.uniform(0.5, 1.5) * kill_every_s
            time.sleep(0.2)

        states = wait(ids, time.monotonic() + timeout_s, during=chaos)
        report.seconds = time.monotonic() - t0
        for i, j in states.items():
            assert j.status == "succeeded", (i, j.status, j.error)
            events = _all(lambda a, i=i: cluster.call(
                lambda c: c.fine_tuning.jobs.list_events(i, limit=100, **({"after": a} if a else {}))))
            assert len({e.id for e in events}) == len(events), f"{i}: an event listed twice"
            metric_steps = sorted(e.data["step"] for e in events if e.type == "metrics")
            assert metric_steps == list(range(1, steps + 1)), f"{i}: steps mirrored twice or missing"
            cps = _all(lambda a, i=i: cluster.call(
                lambda c: c.fine_tuning.jobs.checkpoints.list(i, limit=100, **({"after": a} if a else {}))))
            numbers = [cp.step_number for cp in cps]
            assert numbers and len(set(numbers)) == len(numbers), f"{i}: checkpoints {numbers}"
            assert adapter(cluster.live(), i) == want, f"{i}: adapter differs from the uninterrupted run"
        return report
    finally:
        cluster.stop()
