"""`agreements up`: the whole service on one machine, in one process tree.

Starts the Temporal dev server from the installed `temporal` binary (persistent database
under the data folder, so pending reminders survive a restart) unless an external Temporal
address is configured; the mail sink (every email lands as an .eml file under
data/mail) unless an SMTP relay is configured; and the worker. Prints the addresses and
stops everything cleanly on Ctrl-C or SIGTERM. Running it again keeps the agreements.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import uvicorn
from temporalio.client import Client

from agreements import logs, telemetry
from agreements.ops import OperationError, connect
from agreements.web.app import create_app
from emails.sink import start_sink
from models.codec import make_key_file
from models.config import Settings, binary
from models.db import SchemaError, migrate, shown
from models.db import ready as schema_ready
from worker import build_worker

LOOPBACK = "127.0.0.1"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class WebServer(uvicorn.Server):
    """uvicorn inside our process tree: `up` owns Ctrl-C and stops it in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def dev_server_command(config: Settings) -> list[str]:
    """The dev server's command line. It listens on loopback only: the frontend (`--ip`)
    and the Web UI (`--ui-ip`, spelled out though it follows `--ip`), and with them its
    HTTP API and metrics ports; it has no authentication and must not be reachable from
    the network."""
    return [
        binary("temporal"),
        "server",
        "start-dev",
        "--ip",
        LOOPBACK,
        "--ui-ip",
        LOOPBACK,
        "--port",
        str(config.temporal_port),
        "--ui-port",
        str(config.temporal_ui_port),
        "--db-filename",
        str((config.data_dir / "temporal.db").resolve()),
        # Write-ahead logging: a reader (the backup's copy) never holds the server's writes
        "--sqlite-pragma",
        "journal_mode=wal",
        "--namespace",
        config.temporal_namespace,
        "--log-level",
        "warn",
    ]


def start_dev_server(config: Settings, log: Path) -> subprocess.Popen[bytes]:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        dev_server_command(config),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us; we stop it in order
    )


async def wait_for_temporal(
    config: Settings, server: subprocess.Popen[bytes] | None, runtime: Any = None
) -> Client:
    last: OperationError | None = None
    for _ in range(300):
        if server is not None and server.poll() is not None:
            log = config.data_dir / "temporal.log"
            raise OperationError(
                f"the Temporal dev server exited ({server.returncode}); see {log}",
                "server-exited",
                status=server.returncode,
                log=str(log),
            )
        try:
            return await connect(config, runtime)
        except OperationError as error:
            last = error
            await asyncio.sleep(0.1)
    raise last or OperationError("Temporal did not answer", "unreachable-quiet")


def uses_sink(config: Settings) -> bool:
    return (
        config.smtp_host in ("127.0.0.1", "localhost")
        and "smtp_host" not in config.model_fields_set
    )


MIN_SECRET = 32  # characters of a token or secret the service takes outside loopback


def refuse_weak_secrets(config: Settings) -> None:
    """Listening beyond this machine, the service will not run on the default token or
    signing secret, nor on one short enough to guess; on loopback (a trial) it warns."""
    if config.web_host in LOOPBACK_HOSTS:
        return
    for name, value in (
        ("AGREEMENTS_API_TOKEN", config.api_token),
        ("AGREEMENTS_SIGNING_SECRET", config.signing_secret),
    ):
        secret = value.get_secret_value()
        if "change-me" in secret or len(secret) < MIN_SECRET:
            raise OperationError(
                f"{name} is the default or shorter than {MIN_SECRET} characters, and the "
                f"service would listen on {config.web_host}: set it to a long random value "
                "(python3 -c 'import secrets; print(secrets.token_urlsafe(32))'), or listen "
                "on 127.0.0.1 only",
                "weak-secret",
                name=name,
                size=MIN_SECRET,
                host=config.web_host,
            )


def web_config(config: Settings, app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.web_host,
        port=config.web_port,
        log_level="warning",
        lifespan="on",
        # A client's address from X-Forwarded-For only when it comes from a proxy named in
        # AGREEMENTS_TRUSTED_PROXIES; else the address that connected.
        proxy_headers=bool(config.trusted_proxies),
        forwarded_allow_ips=config.trusted_proxies or None,
    )


async def up(
    config: Settings,
    ready: asyncio.Event | None = None,
    *,
    worker: bool = True,
    web: bool = True,
) -> None:
    """The whole service (both parts), or one part of a deployment: `worker=False` is a web
    server, `web=False` a worker. Only the whole service migrates the database and runs
    its own Temporal dev server and mail sink; a part expects them (docs/deploy.md)."""
    whole = worker and web
    logs.configure(config)
    if web:
        refuse_weak_secrets(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    # The database, the mail and the dev server's history hold personal data: the service's
    # own user only.
    config.data_dir.chmod(0o700)
    if whole:  # the embedded default seals what it stores in Temporal with a key of its own
        make_key_file(config)
    server = None
    if whole and config.embedded_temporal():
        server = start_dev_server(config, config.data_dir / "temporal.log")
    try:
        async with AsyncExitStack() as stack:
            try:  # the database at the newest schema before anything runs
                migrate(config.db_url()) if whole else schema_ready(config.db_url())
            except SchemaError as error:
                raise OperationError(str(error), "schema", problem=str(error)) from None
            runtime = telemetry.runtime_for(config) if worker else None
            client = await wait_for_temporal(config, server, runtime)
            mail = config.data_dir / "mail"
            sink = whole and uses_sink(config)
            if sink:
                controller = start_sink(mail, host="127.0.0.1", port=config.smtp_port)
                stack.callback(controller.stop)
            if worker:
                await stack.enter_async_context(build_worker(client, config, watch=True))
            if web:
                server_web = WebServer(web_config(config, create_app(config, client)))
                serving = asyncio.create_task(server_web.serve())

                async def stop_web() -> None:
                    server_web.should_exit = True
                    await serving

                stack.push_async_callback(stop_web)
                # Said to be running once it answers: a script may ask at once
                while not server_web.started and not serving.done():
                    await asyncio.sleep(0.02)
                if serving.done():
                    await serving  # it could not start (its reason is raised here)
                    raise OperationError("the web server stopped", "web-stopped")
            what = "agreement service" if whole else ("worker" if worker else "web server")
            print(f"Avtalstjänsten körs / the {what} is running:", flush=True)
            if web:
                site = f"http://{config.web_host}:{config.web_port}"
                print(f"  Webb            {site}", flush=True)
                print(f"  API             {site}/docs", flush=True)
            print(
                f"  Temporal        {config.temporal_target()} ({config.temporal_namespace})",
                flush=True,
            )
            if server is not None:
                print(f"  Temporal Web UI http://127.0.0.1:{config.temporal_ui_port}", flush=True)
            if worker:
                if sink:
                    print(
                        f"  E-post (sink)   {mail.resolve()}  (SMTP 127.0.0.1:{config.smtp_port})"
                    )
                else:
                    print(f"  E-post (SMTP)   {config.smtp_host}:{config.smtp_port}")
            print(f"  Databas         {shown(config.db_url())}")
            if "change-me" in config.api_token.get_secret_value() + (
                config.signing_secret.get_secret_value()
            ):
                print(
                    "  Varning: standardnyckeln används; sätt AGREEMENTS_API_TOKEN och "
                    "AGREEMENTS_SIGNING_SECRET innan tjänsten används på riktigt.",
                    flush=True,
                )
            print("Stoppa med Ctrl-C.", flush=True)
            if ready is not None:
                ready.set()
            await stop.wait()
            print("Stoppar …", flush=True)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        print("Stoppad.", flush=True)
