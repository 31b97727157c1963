"""The audit chain stays provable with the API's batched appends (api/app.py AuditWriter: the write
requests waiting together share one transaction): many concurrent writes to a real `vreserve
serve` land in multi-record transactions, `vreserve audit-log verify` proves the chain, and a row
edited in the middle of a batch is found by number. Own database: the test breaks the chain."""
from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid

import httpx
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.api.conftest import PASSWORD, ROOT, _wait_up, free_port, settings_env
from vreserve import identity as ident
from vreserve.db import connect, migrate

pytestmark = pytest.mark.services

WRITES = 300


async def _burst(url: str, token: str) -> list[int]:
    """WRITES acknowledgements of alerts that do not exist (404, each one audited), 50 at a time."""
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, limits=limits,
                                 timeout=60) as client:
        async def one(i: int) -> int:
            return (await client.post(f"/api/v1/alerts/no-such-{i}/acknowledge", json={})).status_code
        return await asyncio.gather(*(one(i) for i in range(WRITES)))


def test_batched_appends_keep_a_chain_that_verify_proves_and_an_edit_is_found(settings, tmp_path):
    info = conninfo_to_dict(settings.pg_dsn)
    name = f"vr_test_chain_{uuid.uuid4().hex[:6]}"
    with connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    private = settings.with_(pg_dsn=make_conninfo(**{**info, "dbname": name}), state_dir=tmp_path)
    proc = None
    try:
        migrate(private.pg_dsn)
        with connect(private.pg_dsn, autocommit=True) as conn:
            ident.add_user(conn, "op1", "operator", PASSWORD, "test")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(tmp_path / "serve.log", "w")
        proc = subprocess.Popen([sys.executable, "-m", "vreserve.cli", "serve", "--addr", f"127.0.0.1:{port}"],
                                cwd=ROOT, env=settings_env(private), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        _wait_up(url, proc, tmp_path / "serve.log")
        token = httpx.post(f"{url}/api/v1/auth/token", data={"username": "op1", "password": PASSWORD}).json()
        statuses = asyncio.run(_burst(url, token["access_token"]))
        assert statuses == [404] * WRITES
        env = settings_env(private)
        cmd = [sys.executable, "-m", "vreserve.cli", "audit-log", "verify"]
        with connect(private.pg_dsn, autocommit=True) as conn:
            batches = conn.execute("SELECT xmin::text, count(*), min(seq), max(seq) FROM audit_log"
                                   " WHERE target LIKE 'no-such-%%' GROUP BY 1 ORDER BY 2 DESC").fetchall()
            assert sum(b[1] for b in batches) == WRITES
            assert batches[0][1] > 1, "no two records shared a transaction: the batching was not exercised"
            good = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
            assert good.returncode == 0 and "hash chain verified" in good.stdout, good.stdout + good.stderr
            victim = batches[0][2] + 1   # a record inside the biggest batch (not its first)
            assert victim <= batches[0][3]
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
            conn.execute("UPDATE audit_log SET actor = 'user:eve' WHERE seq = %s", (victim,))
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update")
        bad = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and f"record {victim}" in bad.stderr and "changed" in bad.stderr, bad.stderr
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
        with connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
