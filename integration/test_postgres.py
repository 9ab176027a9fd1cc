"""The gateway on PostgreSQL (`[storage] backend = "postgres"`): the real binary, its worker
process and a real server (pg_server.py). Proves the wiring: the state lives in PostgreSQL
(a second gateway with an empty data dir sees it), the URL and its password come from the
environment, and a bad setting is a start-up error naming its key without leaking the URL.
"""

import subprocess

import openai
import pytest

from conftest import BIN, ROOT, wait_for
from datasets import good_jsonl, upload
from pg_server import pg_server  # noqa: F401  (fixture)

TERMINAL = ("succeeded", "failed", "cancelled")
URL_VAR = "TUNEGUARD_TEST_PG_URL"


def pg_env(server, db: str) -> dict:
    return {
        "TUNEGUARD__STORAGE__BACKEND": "postgres",
        "TUNEGUARD__STORAGE__POSTGRES_URL_ENV": URL_VAR,
        "TUNEGUARD__STORAGE__POSTGRES_POOL_SIZE": "4",
        URL_VAR: server.url(db),
    }


def test_gateway_runs_on_postgres(gateway_factory, pg_server):  # noqa: F811
    db = pg_server.new_database()
    gw = gateway_factory(env=pg_env(pg_server, db), name="gw-a")
    c = gw.client()
    f = upload(c, good_jsonl())
    assert c.files.retrieve(f.id).bytes == len(good_jsonl())
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id,
                                    metadata={"run": "pg"},
                                    extra_headers={"Idempotency-Key": "pg-e2e-1"})
    again = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id,
                                      metadata={"run": "pg"},
                                      extra_headers={"Idempotency-Key": "pg-e2e-1"})
    assert again.id == job.id
    done = wait_for(lambda: (j := c.fine_tuning.jobs.retrieve(job.id)).status in TERMINAL and j,
                    timeout_s=60, what="the job to finish")
    # Local mode with no [[models]]: a stated failure, as on SQLite.
    assert done.status == "failed" and done.error.code == "model_not_available"

    # Events page newest first through the store's cursor.
    events = list(c.fine_tuning.jobs.list_events(job.id, limit=100))
    assert len(events) >= 3, [e.message for e in events]
    first = c.fine_tuning.jobs.list_events(job.id, limit=2)
    assert [e.id for e in first.data] == [e.id for e in events[:2]] and first.has_more
    second = c.fine_tuning.jobs.list_events(job.id, limit=2, after=first.data[-1].id)
    assert [e.id for e in second.data] == [e.id for e in events[2:4]]
    with pytest.raises(openai.BadRequestError):
        c.fine_tuning.jobs.list_events(job.id, after="ftevent-nope")

    # The rows are in PostgreSQL, the SQLite file never made.
    assert pg_server.psql(f"SELECT count(*) FROM jobs WHERE id = '{job.id}'", db=db) == "1"
    newest = len(list((ROOT / "gateway/src/store").glob("postgres_schema_v*.sql")))
    assert pg_server.psql("SELECT max(version) FROM schema_migrations", db=db) == str(newest)
    assert not (gw.data_dir / "tuneguard.db").exists()
    # The supervised worker process polls the same database for leases.
    wait_for(lambda: pg_server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'tuneguard' AND query LIKE '%job_leases%'", db=db) != "0",
        timeout_s=30, what="the worker's lease polls")
    assert gw.stop() == 0

    # Another gateway, empty data dir, same database: the same objects (the file's row is
    # shared; its bytes stay in the first data dir until blobs move to an object store).
    other = gateway_factory(env=pg_env(pg_server, db), name="gw-b")
    c2 = other.client()
    assert [j.id for j in c2.fine_tuning.jobs.list()] == [job.id]
    assert c2.fine_tuning.jobs.retrieve(job.id).status == "failed"
    assert [e.id for e in c2.fine_tuning.jobs.list_events(job.id, limit=100)] == [e.id for e in events]
    assert c2.files.retrieve(f.id).filename == f.filename
    assert other.client("beta").fine_tuning.jobs.list().data == []


def test_bad_postgres_settings_fail_at_start_naming_the_key(pg_server, tmp_path):  # noqa: F811
    db = pg_server.new_database()
    wrong = pg_server.url(db, password="not-the-password")
    cfg = tmp_path / "tuneguard.toml"

    def start(env: dict) -> str:
        cfg.write_text(f'[server]\nlisten = "127.0.0.1:0"\n[storage]\ndata_dir = "{tmp_path / "data"}"\n'
                       f'[policies]\ndir = "{tmp_path}"\n')
        out = subprocess.run([BIN, "serve", "--config", str(cfg)], env={**env, "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert out.returncode != 0, out.stderr
        assert out.stdout == ""
        return out.stderr

    err = start({"TUNEGUARD__STORAGE__BACKEND": "postgres",
                 "TUNEGUARD__STORAGE__POSTGRES_URL_ENV": URL_VAR})
    assert "storage.postgres_url_env" in err and URL_VAR in err, err
    err = start({"TUNEGUARD__STORAGE__BACKEND": "postgres",
                 "TUNEGUARD__STORAGE__POSTGRES_URL_ENV": URL_VAR, URL_VAR: wrong})
    assert "storage.postgres_url_env" in err, err
    assert "not-the-password" not in err, err
    err = start({"TUNEGUARD__STORAGE__BACKEND": "postgres"})
    assert "storage.postgres_url" in err, err
