"""A short chaos run in CI (integration/chaos.py; the long one is scripts/chaos.py): three jobs
across two replicas and two remote workers over PostgreSQL and S3 while one of the four
processes is killed -9 and restarted every few seconds. Every job succeeds with each step and
checkpoint recorded once and the adapter of an uninterrupted run."""

from chaos import run
from machines import shared_env
from pg_server import pg_server  # noqa: F401  (fixture)
from s3_server import s3_server  # noqa: F401  (fixture)
from test_local_training import LONG, POLICY, TINY


def test_jobs_survive_processes_killed_in_a_loop(pg_server, s3_server, tmp_path):  # noqa: F811
    db, bucket = pg_server.new_database(), s3_server.new_bucket()
    env = shared_env(pg_server, db, s3_server, bucket)
    report = run(tmp_path, env, POLICY, TINY, jobs=3, epochs=LONG, kill_every_s=3.0, seed=13,
                 timeout_s=600)
    assert len(report.jobs) == 3
    # The run is not chaos unless something died while jobs trained.
    assert report.kills, "no process was killed during the run"
