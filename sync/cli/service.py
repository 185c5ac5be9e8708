"""``erpsync worker | beat | serve | notify``: the Celery service and the web app.

Each command loads the configuration once, configures the Celery app with it, then hands
over to Celery or uvicorn. Several workers on several machines share one PostgreSQL and
one Redis (docs/deployment.md).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sync.cli._common import ConfigOption, TenantOption, console, fail, settings_or_exit
from sync.errors import ConfigError, ErpsyncError

ALL_QUEUES = "events,reconcile,inbound"


def worker(
    config: ConfigOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Processes in this worker's pool.")] = 2,
    queues: Annotated[str, typer.Option(help="Comma-separated queues to consume.")] = ALL_QUEUES,
    hostname: Annotated[str | None, typer.Option(help="Worker node name, e.g. worker1@%h.")] = None,
    pool: Annotated[str, typer.Option(help="Celery pool: prefork, threads or solo.")] = "prefork",
    loglevel: Annotated[str | None, typer.Option(help="Log level (default: the config's).")] = None,
) -> None:
    """Run a Celery worker: change events, reconciles and inbound webhooks."""
    from sync import celery_app
    from sync.observability.logging import connect_celery

    connect_celery(celery_app.settings)  # the worker logs through erpsync's handler: task lines, text or JSON

    settings = settings_or_exit(config)
    try:
        app = celery_app.configure(settings)
    except ErpsyncError as exc:
        raise fail(exc) from None
    argv = [
        "worker",
        f"--concurrency={concurrency}",
        f"--queues={queues}",
        f"--pool={pool}",
        f"--loglevel={loglevel or settings.log_level}",
    ]
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


def beat(
    config: ConfigOption = None,
    schedule: Annotated[Path, typer.Option(help="Beat's state file (last run times).")] = Path(
        "/tmp/erpsync-beat-schedule"
    ),
    pidfile: Annotated[Path, typer.Option(help="PID file (the container healthcheck looks for it).")] = Path(
        "/tmp/erpsync-beat.pid"
    ),
    loglevel: Annotated[str | None, typer.Option(help="Log level (default: the config's).")] = None,
) -> None:
    """Run Celery beat: per-tenant reconciles, the SQL watermark poll, the inbox relay. Run exactly one."""
    from sync import celery_app
    from sync.observability.logging import connect_celery

    connect_celery(celery_app.settings)  # beat logs through erpsync's handler, text or JSON

    settings = settings_or_exit(config)
    try:
        app = celery_app.configure(settings)
    except ErpsyncError as exc:
        raise fail(exc) from None
    app.start(
        [
            "beat",
            f"--schedule={schedule}",
            f"--pidfile={pidfile}",
            f"--loglevel={loglevel or settings.log_level}",
        ]
    )


def serve(
    config: ConfigOption = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the web app: POST /erp/events, platform webhooks, /health/live, /health/ready."""
    import uvicorn

    settings = settings_or_exit(config)
    level = settings.log_level.lower()
    if workers > 1:  # each process builds its own app from the same configuration
        if config is not None:
            os.environ["ERPSYNC_CONFIG"] = str(config)
        uvicorn.run(
            "sync.web.app:create_app", factory=True, host=host, port=port, workers=workers, log_level=level
        )
        return
    from sync.web import create_app

    try:
        app = create_app(settings)
    except ErpsyncError as exc:
        raise fail(exc) from None
    # log_config=None: uvicorn's loggers go through erpsync's handler (text or JSON, redacted)
    uvicorn.run(app, host=host, port=port, log_level=level, log_config=None)


def notify(
    entity: Annotated[
        str, typer.Argument(help="ERP entity a mapping reads (its `source:`), e.g. funcionarios.")
    ],
    keys: Annotated[
        list[str], typer.Argument(help="ERP keys of the changed rows (the mapping's `key:` column).")
    ],
    config: ConfigOption = None,
    tenant: TenantOption = None,
) -> None:
    """Announce changed ERP rows (like POST /erp/events): they are synced now, bursts coalesced.

    ENTITY is an ERP table or query a mapping reads (its `source:`), not a platform entity.

    KEYS are values of that mapping's `key:` column (for a child source: the parents' keys).

    Example, with the shipped mappings (employees come from funcionarios, keyed by matricula):

        erpsync notify funcionarios 0000001 0000002 --config config.yaml
    """
    from sync import celery_app, tasks
    from sync.engine.entities import refuse_event

    settings = settings_or_exit(config)
    try:
        tenant_id, tenant_settings = settings.tenant(tenant)
        refused = refuse_event(tenant_settings, entity)
        if refused is not None:
            raise ConfigError(refused[0], hint="name an ERP entity a mapping reads (its `source:`)")
        celery_app.configure(settings)
        admission = tasks.submit_keys(tenant_id, entity, keys)
    except ErpsyncError as exc:
        raise fail(exc) from None
    except Exception as exc:  # Redis unreachable, …: one clear line, no traceback
        raise fail(exc) from None
    fresh = sum(len(group) for group, _ in admission.send.values())
    console.print(
        f"queued {fresh} key(s), {len(set(keys)) - fresh} already covered; task {admission.primary_task_id}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.command("beat")(beat)
    app.command("serve")(serve)
    app.command("notify")(notify)
