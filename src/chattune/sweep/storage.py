"""The study's database: open it (one line with the fix when that fails) and serialise trial starts.

    storage = open_storage(url, heartbeat_seconds=20, grace_seconds=120, retry=callback, source="s.yaml")
    lock = StartLock(database_url(url, source="s.yaml"), "s")  # from "count the trials" to "mine runs"

Any SQLAlchemy URL works; SQLite (one machine) and PostgreSQL (several machines, driver from the
`chattune[postgres]` extra) are the two that are tested.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
from pathlib import Path
from typing import IO, Any

from chattune.errors import ChattuneError

POSTGRES_URL_FORM = "postgresql://USER:PASSWORD@HOST:5432/DATABASE"
DRIVER_FIX = {
    "postgresql": "pip install 'chattune[postgres]' (the psycopg[binary] driver)",
    "mysql": "pip install pymysql and write mysql+pymysql://...",
}
# A server that does not answer (a firewall dropping packets) would otherwise hang for minutes.
CONNECT_TIMEOUT_S = 10


def database_url(url: str, *, source: str) -> Any:  # sqlalchemy.engine.URL
    """The storage URL parsed, with the driver chattune installs; a ChattuneError if it is no URL."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:
        raise ChattuneError(
            f"{source}: sweep.storage {url!r} is not a database URL: write {POSTGRES_URL_FORM} "
            "(or sqlite:////absolute/path/study.db)"
        ) from None
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg2") is None:
        # SQLAlchemy < 2.1 reads a bare postgresql:// as psycopg2; chattune[postgres] installs psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def open_storage(
    url: str, *, heartbeat_seconds: int, grace_seconds: int, retry: Any, source: str
) -> Any:  # optuna.storages.RDBStorage; Any keeps optuna's import inside the function
    """An Optuna RDBStorage with heartbeats and the retry callback, or a ChattuneError in one line."""
    import optuna.storages
    from optuna.storages import RDBStorage

    parsed = database_url(url, source=source)
    backend = parsed.get_backend_name()
    engine_kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        # Several processes write to one SQLite file: wait for its lock instead of failing after 5 s.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif backend == "postgresql":
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}, "pool_pre_ping": True}
    # Optuna >= 4.9 renamed the retry callback's argument; the old name warns there.
    new_name = hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
    callback = {"heartbeat_stale_trial_callback" if new_name else "failed_trial_callback": retry}
    try:
        return RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_seconds,
            grace_period=grace_seconds,
            **callback,
        )
    except Exception as e:
        raise ChattuneError(f"{source}: sweep.storage {safe_url(url)}: {explain(parsed, e)}") from None


def explain(parsed: Any, error: BaseException) -> str:
    """What went wrong opening the database, and the fix, from the exception chain's text."""
    chain: list[BaseException] = []
    e: BaseException | None = error
    while e is not None:
        chain.append(e)
        e = e.__cause__ or e.__context__
    text = " ".join(" ".join(str(c).split()) for c in chain)
    backend = parsed.get_backend_name()
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    if any(isinstance(c, ImportError) for c in chain) or "Can't load plugin" in text:
        if backend in DRIVER_FIX:
            return f"the {backend} driver is not installed: {DRIVER_FIX[backend]}"
        return f"no SQLAlchemy dialect or driver for {parsed.drivername!r}: write {POSTGRES_URL_FORM}"
    if "Connection refused" in text:
        return (
            f"connection refused at {where}: start PostgreSQL there or fix the host and port "
            "(a server on another machine needs listen_addresses and a pg_hba.conf line for this host)"
        )
    if "password authentication failed" in text or "no password supplied" in text:
        return f"the server refused the login of {parsed.username!r}: fix the user and password in the URL"
    if "does not exist" in text and "database" in text:
        return (
            f"no database {parsed.database!r} on {where}: create it (createdb -O {parsed.username} "
            f"{parsed.database})"
        )
    if "could not translate host name" in text or "Name or service not known" in text:
        return f"unknown host {parsed.host!r}: fix the host name in the URL"
    if "timeout expired" in text or "timed out" in text:
        return (
            f"no answer from {where} within {CONNECT_TIMEOUT_S} s: is the host reachable and the port open?"
        )
    return (chain[-1].__class__.__name__ + ": " + " ".join(str(chain[-1]).split()))[:300]


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and reports."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


class StartLock:
    """Held by one process at a time from counting the study's trials until its own trial is running.

    Without it two processes can both count "5 of 6 started", both start one, and the 7th trial runs a
    grid point a second time (Optuna's GridSampler falls back to an unfinished point once all are
    taken). PostgreSQL: a session advisory lock, released by the server if the process dies. SQLite: a
    file lock next to the database (its processes share one machine). Other databases: no lock.
    """

    def __init__(self, url: Any, study_name: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        # Its own connection, opened for the lock and closed with it (a pool would keep it idle).
        postgres = url.get_backend_name() == "postgresql"
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} if postgres else {}
        self._engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
        self._key = int.from_bytes(
            hashlib.blake2b(f"chattune:{study_name}".encode(), digest_size=8).digest(), "big", signed=True
        )
        self._conn: Any = None
        self._file: IO[bytes] | None = None
        database = self._engine.url.database
        self._path = (
            Path(f"{database}.lock")
            if self._engine.dialect.name == "sqlite" and database not in (None, "", ":memory:")
            else None
        )

    def acquire(self) -> None:
        from sqlalchemy import text

        if self._engine.dialect.name == "postgresql":
            self._conn = self._engine.connect()
            self._conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": self._key})
            self._conn.commit()
        elif self._path is not None:
            self._file = self._path.open("ab")
            fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        """Idempotent: called when the trial has started, and again after it (a no-op then)."""
        from sqlalchemy import text

        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                conn.commit()
            finally:
                conn.close()
        if self._file is not None:
            file, self._file = self._file, None
            fcntl.flock(file, fcntl.LOCK_UN)
            file.close()
