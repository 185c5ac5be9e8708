"""Logs an operator can read and a machine can parse.

- ``setup_logging(level, fmt)`` puts one handler on the root logger: ``text`` (one line per
  record, the context appended as ``key=value``) or ``json`` (one JSON object per line).
  ``erpsync --log-format json --log-level DEBUG <command>`` overrides the configuration's
  ``log_format`` / ``log_level`` (``set_overrides``).
- A context variable carries the tenant, run id, task kind and id, and a record's platform,
  entity and key into every log record (``ContextFilter``); ``log_context(...)`` scopes
  them, ``bind_log_context(...)`` adds to the current scope (the engine binds the run id).
  A field passed as ``extra=`` wins over the context.
- Secrets never reach the output: the message, every field and any traceback are scrubbed
  of registered secret values, and fields with secret-looking names are masked
  (``sync.redact``).
- Celery (``connect_celery()``): the worker and beat log through this handler (Celery then
  neither hijacks the root logger nor redirects stderr), every erpsync task logs one
  INFO line when it starts and one when it ends (tenant, run id, kind, status, counts,
  duration), and the worker and beat say at INFO what they consume or schedule.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import enum
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from sync.redact import install_log_redaction, redact, scrub

FORMATS: tuple[str, ...] = ("text", "json")
LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")


class LogFormatChoice(enum.StrEnum):  # ``erpsync --log-format``
    text = "text"
    json = "json"


class LogLevelChoice(enum.StrEnum):  # ``erpsync --log-level``
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


# The context a record carries, in the order the text format prints it.
CONTEXT_FIELDS = ("tenant", "run_id", "kind", "task_id", "platform", "entity", "key", "request_id")

# Libraries that log every HTTP request or migration step at INFO: they would bury the plan,
# the progress bars and the run report. They speak at INFO only with the level DEBUG.
CHATTY_LOGGERS = ("httpx", "httpcore", "alembic")

HANDLER_NAME = "erpsync"

log = logging.getLogger("erpsync.service")

_EMPTY: Mapping[str, Any] = {}
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "erpsync_log_context", default=_EMPTY
)


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None and v != ""}


def current_context() -> dict[str, Any]:
    """The fields the next log record of this context would carry."""
    return dict(_context.get())


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Records logged inside carry ``fields`` (on top of the enclosing context)."""
    token = _context.set({**_context.get(), **_present(fields)})
    try:
        yield
    finally:
        _context.reset(token)


# The run a worker task started, kept after the engine's scope ended: the task's own failure
# (Celery's ERROR line) and its end line still name the run.
_task_run: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "erpsync_task_run", default=None
)


def bind_log_context(**fields: Any) -> None:
    """Add ``fields`` to the current scope: they last until the enclosing ``log_context`` ends."""
    _context.set({**_context.get(), **_present(fields)})
    holder = _task_run.get()
    if holder is not None and fields.get("run_id") is not None:
        holder["run_id"] = fields["run_id"]


class ContextFilter(logging.Filter):
    """Copies the context onto each record (``extra=`` fields of the call win) and renders its
    traceback once, scrubbed: every handler's formatter reuses ``exc_text``."""

    _plain = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        holder = _task_run.get()
        if holder and not hasattr(record, "run_id"):
            record.run_id = holder["run_id"]
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(self._plain.formatException(record.exc_info))
        return True


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_STANDARD.add("color_message")  # uvicorn's copy of the message with terminal colour codes


def _plain(value: Any) -> Any:
    """JSON-ready data: anything else becomes its text (so it is scrubbed like text)."""
    return json.loads(json.dumps(value, default=str))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the context, any extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_") and name not in out:
                out[name] = value
        if record.exc_text:
            out["exc"] = record.exc_text
        elif record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(redact(_plain(out)), ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [tenant=… run_id=… entity=… key=…]``, then any traceback."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = [
            f"{name}={value}"
            for name in CONTEXT_FIELDS
            if (value := getattr(record, name, None)) is not None and value != ""
        ]
        return f"{line} [{' '.join(context)}]" if context else line

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``stream`` or to ``sys.stderr`` as it is when a record is emitted (a handler
    never outlives a replaced stream, e.g. under CliRunner); never into Celery's stderr proxy,
    which would log the line again (and drop it)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._fixed = stream
        super().__init__(stream or sys.stderr)

    @property
    def stream(self) -> Any:
        if self._fixed is not None:
            return self._fixed
        current = sys.stderr
        if type(current).__name__ == "LoggingProxy":
            return sys.__stderr__
        return current

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


_overrides: dict[str, str] = {}


def set_overrides(level: str | None = None, fmt: str | None = None) -> None:
    """The command line's ``--log-level`` / ``--log-format``: they win over the configuration."""
    _overrides.clear()
    if level:
        _overrides["level"] = level.upper()
    if fmt:
        _overrides["format"] = fmt.lower()


def setup_logging(
    level: str | int = "INFO", fmt: str = "text", *, stream: TextIO | None = None
) -> logging.Handler:
    """Configure the root logger (idempotent: replaces the handler an earlier call added)."""
    level = _overrides.get("level", level)
    fmt = _overrides.get("format", fmt)
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else int(level)
    if not isinstance(number, int):
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    handler = _StderrHandler(stream)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    # First: its filters mask the message and the traceback of the record itself, so any other
    # handler on the root logger (a test's capture, a library's) also gets them masked.
    root.handlers.insert(0, handler)
    root.setLevel(number)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if number <= logging.DEBUG else logging.WARNING)
    install_log_redaction()  # the RedactingFilter on this handler and on the root logger
    logging.captureWarnings(True)  # warnings (Celery's superuser warning…) become log records too
    return handler


# --- Celery: the worker and beat log through this handler ---------------------------------


def _no_settings() -> Any:
    raise RuntimeError("connect_celery() was not called")


_service_settings: list[Callable[[], Any]] = [_no_settings]


def _celery_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery's logging set-up is ours: with a receiver here, Celery neither hijacks the root
    logger nor redirects stdout/stderr into a logger."""
    level: int | str = loglevel or "INFO"
    fmt = "text"
    try:
        settings = _service_settings[0]()
        level, fmt = loglevel or settings.log_level, settings.log_format
    except Exception:  # the worker reports a bad configuration itself; logs must work anyway
        pass
    setup_logging(level, fmt)


NO_TENANT = ("relay_inbox", "maintenance")  # erpsync tasks whose first argument is not a tenant

_started: dict[
    str, tuple[contextvars.Token[Mapping[str, Any]], contextvars.Token[dict[str, Any] | None], float]
] = {}


def _tenant_of(kind: str, args: Any, kwargs: Any) -> str | None:
    if isinstance(kwargs, Mapping) and isinstance(kwargs.get("tenant"), str):
        return str(kwargs["tenant"])
    if kind not in NO_TENANT and args and isinstance(args[0], str):
        return str(args[0])
    return None


def task_outcome(retval: Any, state: str | None) -> dict[str, Any]:
    """Status, run id, counts (by outcome) and requests of a finished task, from its result."""
    out: dict[str, Any] = {"status": {"SUCCESS": "ok", "RETRY": "retry"}.get(state or "", "failed")}
    if not isinstance(retval, Mapping):
        return out
    if isinstance(retval.get("status"), str):
        out["status"] = retval["status"]
    if retval.get("run_id") is not None:
        out["run_id"] = retval["run_id"]
    counts: Counter[str] = Counter()
    if isinstance(retval.get("counts"), Mapping):  # "platform/entity/action/outcome" -> n
        for name, n in retval["counts"].items():
            if isinstance(n, int):
                counts[str(name).rsplit("/", 1)[-1]] += n
    else:
        for name, n in retval.items():
            if isinstance(n, int) and not isinstance(n, bool) and name not in ("run_id", "busy"):
                counts[str(name)] += n
    out["counts"] = dict(sorted(counts.items()))
    if isinstance(retval.get("total_requests"), int):
        out["requests"] = retval["total_requests"]
    return out


def _task_started(
    task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_: Any
) -> None:
    name = str(getattr(task, "name", "") or "")
    if not name.startswith("erpsync.") or not task_id:
        return
    kind = name.removeprefix("erpsync.")
    tenant = _tenant_of(kind, args, kwargs)
    token = _context.set({**_context.get(), **_present({"tenant": tenant, "kind": kind, "task_id": task_id})})
    _started[task_id] = (token, _task_run.set({}), time.monotonic())
    retries = int(getattr(getattr(task, "request", None), "retries", 0) or 0)
    log.info(
        "%s%s started%s",
        kind,
        f" of {tenant}" if tenant else "",
        f" (retry {retries})" if retries else "",
        extra={"event": "task_start", "retries": retries},
    )


def _task_finished(
    task_id: str | None = None, retval: Any = None, state: str | None = None, **_: Any
) -> None:
    entry = _started.pop(task_id or "", None)
    if entry is None:
        return
    token, run_token, began = entry
    try:
        took = time.monotonic() - began
        outcome = task_outcome(retval, state)
        started_run = (_task_run.get() or {}).get("run_id")
        if "run_id" not in outcome and started_run is not None:  # a run that failed
            outcome["run_id"] = started_run
        context = _context.get()
        parts = [f"run {outcome['run_id']}"] if "run_id" in outcome else []
        parts += [f"{n} {name}" for name, n in outcome.get("counts", {}).items()]
        if "requests" in outcome:
            parts.append(f"{outcome['requests']} requests")
        log.info(
            "%s%s finished %s in %.2f s%s",
            context.get("kind", "task"),
            f" of {context['tenant']}" if context.get("tenant") else "",
            outcome["status"],
            took,
            f": {', '.join(parts)}" if parts else "",
            extra={"event": "task_end", "duration_s": round(took, 3), **outcome},
        )
    finally:
        try:
            _context.reset(token)
            _task_run.reset(run_token)
        except ValueError:  # set in another context (cannot happen with Celery's pools)
            _context.set(_EMPTY)
            _task_run.set(None)


def _worker_ready(sender: Any = None, **_: Any) -> None:
    try:
        queues = sorted(sender.app.amqp.queues.consume_from)
    except Exception:
        queues = []
    try:
        tenants = sorted(_service_settings[0]().tenants)
    except Exception:
        tenants = []
    log.info(
        "worker %s ready: consuming %s for tenant(s) %s",
        getattr(sender, "hostname", "?"),
        ", ".join(queues) or "the default queue",
        ", ".join(tenants) or "none",
        extra={"event": "worker_ready", "queues": queues, "tenants": tenants},
    )


def _worker_stopping(sig: Any = None, how: Any = None, **_: Any) -> None:
    log.info("worker stopping (%s shutdown on %s)", how, sig, extra={"event": "worker_stop"})


def _beat_started(sender: Any = None, **_: Any) -> None:
    try:
        schedule = dict(sender.app.conf.beat_schedule or {})
    except Exception:
        schedule = {}
    log.info(
        "beat started: %d schedule entries",
        len(schedule),
        extra={"event": "beat_start", "entries": len(schedule)},
    )
    for name, entry in sorted(schedule.items()):
        every = entry.get("schedule")
        log.info(
            "beat schedules %s: %s every %s s",
            name,
            entry.get("task"),
            f"{every:g}" if isinstance(every, int | float) else every,
            extra={"event": "beat_entry", "entry": name, "task": entry.get("task")},
        )


def connect_celery(settings: Callable[[], Any]) -> None:
    """Log the worker and beat through this module (idempotent; ``erpsync worker|beat`` call it).

    ``settings`` returns the service's settings (``celery_app.settings``): handed in, so this
    module stays below the face layer that owns the Celery app.

    With a ``setup_logging`` receiver, Celery neither hijacks the root logger nor redirects
    stdout/stderr into a logger (which swallowed every line after the banner)."""
    from celery import signals

    _service_settings[0] = settings
    signals.setup_logging.connect(_celery_logging, weak=False, dispatch_uid="erpsync-logging")
    signals.task_prerun.connect(_task_started, weak=False, dispatch_uid="erpsync-task-start")
    signals.task_postrun.connect(_task_finished, weak=False, dispatch_uid="erpsync-task-end")
    signals.worker_ready.connect(_worker_ready, weak=False, dispatch_uid="erpsync-worker-ready")
    signals.worker_shutting_down.connect(_worker_stopping, weak=False, dispatch_uid="erpsync-worker-stop")
    signals.beat_init.connect(_beat_started, weak=False, dispatch_uid="erpsync-beat-start")
