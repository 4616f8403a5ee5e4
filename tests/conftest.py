"""Fixtures shared by every test folder: a real PostgreSQL server, a fresh database on it per test, and
the real embedded SmolLM2 model (converted once per machine, loaded once per session).

PostgreSQL comes from ``$PALAESTRA_TEST_PG_URL`` when set, else from ``scripts/postgres.sh`` (which
installs and starts a throwaway local server). When neither works the PostgreSQL tests fail under CI
(``$CI`` set), so a broken set-up can never pass as green, and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

# Everything must work without the model hub.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parent.parent
PG_URL_VAR = "PALAESTRA_TEST_PG_URL"


def _unavailable(reason: str) -> None:
    message = (
        f"PostgreSQL is not available: {reason}. Start it with scripts/postgres.sh and set "
        f'{PG_URL_VAR} to the URL it prints (eval "$(scripts/postgres.sh env)").'
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _start_with_script() -> str:
    script = REPO / "scripts" / "postgres.sh"
    try:
        # Generous: on a fresh machine the script first installs PostgreSQL with apt-get.
        done = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as e:
        _unavailable(f"running {script} failed ({e})")
    if done.returncode != 0:
        _unavailable(f"{script} exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """URL of a database on a running PostgreSQL server, from which per-test databases are made."""
    url = os.environ.get(PG_URL_VAR) or _start_with_script()
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as e:
        _unavailable(f"cannot connect to {make_url(url).render_as_string(hide_password=True)} ({e})")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """URL of a new, empty PostgreSQL database for this test alone; dropped afterwards."""
    name = f"palaestra_t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:
        admin.dispose()
        pytest.fail(
            f"cannot create a per-test database on {PG_URL_VAR}'s server ({e}); the tests need a user "
            "allowed to CREATE DATABASE (the postgres user of scripts/postgres.sh is)",
            pytrace=False,
        )
    try:
        yield make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            # FORCE: a test that failed may still hold connections to its database.
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --------------------------------------------------------------------------- the embedded model


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """The converted embedded model directory (converted on the first run, ~25 s; reused afterwards)."""
    from palaestra.models.embedded import ensure_embedded_model

    return ensure_embedded_model()


@pytest.fixture(scope="session")
def local_model(embedded_dir: Path) -> Iterator[object]:
    """One LocalModel on the embedded weights, shared by the tests (loading takes a few seconds)."""
    from palaestra.models.local import LocalModel

    model = LocalModel(embedded_dir, spec="smollm2-135m")
    yield model
    asyncio.run(model.close())


# --------------------------------------------------------------------------- documentation examples


def _run_doc_block(code: str, label: str) -> None:
    """Run a code block of the docs as a module of its own (so an entry point like f"{__name__}:MyEnv" in it
    imports), then put the environment registry back exactly as it was."""
    import re
    import sys
    import types

    from palaestra.envs import registry

    module = types.ModuleType("palaestra_doc_" + re.sub(r"\W", "_", label))
    sys.modules[module.__name__] = module
    saved = dict(registry._REGISTRY)
    try:
        exec(compile(code, label, "exec"), module.__dict__)
    finally:
        registry._REGISTRY.clear()
        registry._REGISTRY.update(saved)
        del sys.modules[module.__name__]


@pytest.fixture
def run_doc_block() -> object:
    """``run_doc_block(code, label)``: see ``_run_doc_block``."""
    return _run_doc_block
