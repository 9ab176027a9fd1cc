"""Past one machine (issue 13): two `tuneguard serve` replicas with no workers of their own and
two `tuneguard worker` processes, each in its own data folder — as on four machines — sharing
only a real PostgreSQL server (state, leases) and a real S3-wire server (moto: blobs and the job
directories that travel between worker and replicas). The openai SDK alternates between the
replicas: every object is visible from both, a job created on one is trained by some worker
and paused, resumed and cancelled from the other, a worker and then a replica are killed -9
mid-job, and every job ends with the adapter of an uninterrupted run, each step mirrored once.
"""

import httpx2 as httpx

from conftest import wait_for
from datasets import good_jsonl, upload
from machines import Worker, adapter, models_toml, shared_env
from pg_server import pg_server  # noqa: F401  (fixture)
from s3_server import s3_server  # noqa: F401  (fixture)
from test_local_training import LONG, LONG_STEPS, POLICY, TINY, create, finished, metric, metric_steps


def lease_holder(pg, db, job_id):
    return pg.psql(f"SELECT worker_id FROM job_leases WHERE job_id = '{job_id}'", db=db)


def test_replicas_and_remote_workers_share_only_postgres_and_a_bucket(
        gateway_factory, pg_server, s3_server, tmp_path):  # noqa: F811
    db, bucket = pg_server.new_database(), s3_server.new_bucket()
    env = shared_env(pg_server, db, s3_server, bucket)
    policies = {"default.toml": POLICY}
    a = gateway_factory(extra=models_toml(TINY, 0), policies=policies, env=env, name="replica-a")
    b = gateway_factory(extra=models_toml(TINY, 0), policies=policies, env=env, name="replica-b")
    workers = [Worker(tmp_path / f"worker-{i}", env, POLICY, TINY) for i in (1, 2)]
    try:
        ca, cb = a.client(), b.client()

        # A file uploaded through one replica is listed and read back byte for byte by the other.
        data = good_jsonl(48)
        f = upload(ca, data)
        assert cb.files.retrieve(f.id).bytes == len(data)
        assert cb.files.content(f.id).read() == data
        assert f.id in [x.id for x in cb.files.list()]

        # A job created on b, trained by some worker, followed and downloaded on a.
        ref = create(cb, f, n_epochs=LONG, suffix="ref")
        done = finished(ca, ref.id)
        assert done.status == "succeeded", done.error
        want = adapter(a, ref.id)
        assert adapter(b, ref.id) == want
        assert metric_steps(cb, ref.id) == list(range(1, LONG_STEPS + 1))
        assert [c.step_number for c in ca.fine_tuning.jobs.checkpoints.list(ref.id, limit=100)]
        # With its outcome in the bucket, the worker's own copy of the job is redundant: gone.
        wait_for(lambda: not any((w.data_dir / "jobs" / ref.id).exists() for w in workers),
                 what="the worker to remove its copy of the finished job")

        # Created on a, paused from b, resumed from a; the worker training it is killed -9
        # past a checkpoint: the other worker takes it over from the bucket's copy.
        job = create(ca, f, n_epochs=LONG, suffix="moved")
        wait_for(lambda: len(metric_steps(cb, job.id)) >= 3, timeout_s=120, what="training to start")
        assert cb.fine_tuning.jobs.pause(job.id).status == "paused"
        wait_for(lambda: lease_holder(pg_server, db, job.id) == "", timeout_s=60,
                 what="the worker to let go of the paused job")
        assert ca.fine_tuning.jobs.retrieve(job.id).status == "paused"
        assert ca.fine_tuning.jobs.resume(job.id).status in ("running", "queued")
        wait_for(lambda: len(metric_steps(cb, job.id)) >= 15, timeout_s=120, what="a checkpoint after resuming")
        holder = wait_for(lambda: lease_holder(pg_server, db, job.id), what="the job's lease")
        [victim] = [w for w in workers if holder.startswith(f"worker-{w.proc.pid}-")]
        victim.kill()
        done = finished(cb, job.id)
        assert done.status == "succeeded", done.error
        assert adapter(a, job.id) == want
        assert metric_steps(ca, job.id) == list(range(1, LONG_STEPS + 1)), "every step once"
        text = httpx.get(a.url + "/metrics").text
        assert metric(text, "tuneguard_local_lease_takeovers_total") == 1
        # A worker killed mid-job leaves its copy behind (this one may have died before it had
        # one: a stale copy of a finished job stands in for it); started again, it finds the
        # jobs finished and removes their copies before claiming anything, and leaves alone a
        # folder no job of the store names.
        stale = [victim.data_dir / "jobs" / ref.id, victim.data_dir / "jobs" / job.id]
        stray = victim.data_dir / "jobs" / "not-a-job"
        for d in (*stale, stray):
            (d / "run").mkdir(parents=True, exist_ok=True)
            (d / "run" / "adapter_model.safetensors").write_bytes(b"stale")
        victim.start()
        wait_for(lambda: not any(d.exists() for d in stale), timeout_s=60,
                 what="the restarted worker to remove its copies of finished jobs")
        assert stray.is_dir()

        # Replica a is killed -9 mid-job: b drives the job to the same adapter.
        job = create(ca, f, n_epochs=LONG, suffix="orphaned")
        wait_for(lambda: len(metric_steps(cb, job.id)) >= 3, timeout_s=120, what="training to start")
        a.kill()
        done = finished(cb, job.id)
        assert done.status == "succeeded", done.error
        assert adapter(b, job.id) == want
        assert metric_steps(cb, job.id) == list(range(1, LONG_STEPS + 1))

        # Cancelled from b: stays cancelled, its checkpoints listed.
        a.start()
        ca = a.client()
        job = create(ca, f, n_epochs=LONG, suffix="cancelled")
        wait_for(lambda: list(cb.fine_tuning.jobs.checkpoints.list(job.id)), timeout_s=120,
                 what="a first checkpoint")
        cb.fine_tuning.jobs.cancel(job.id)
        done = finished(ca, job.id)
        assert done.status == "cancelled" and done.fine_tuned_model is None

        # Nothing was shared through a folder: the replicas never held a worker's directory,
        # the bucket holds the blobs and the job directories.
        for gw in (a, b):
            assert not (gw.data_dir / "jobs").exists()
        keys = s3_server.keys(bucket, "tg/")
        assert any(k.startswith("tg/blobs/") for k in keys)
        assert f"tg/jobs/{ref.id}/outcome.json" in keys
    finally:
        for w in workers:
            w.stop()
