"""Logs an operator can read and a machine can parse (issue #17, item 2): the formatters, the
context, redaction, the command-line overrides and the task start/end lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sync.observability import logging as obs
from sync.redact import register_secret

SECRET = "sk_live_LogTestSecret_9f3b2c"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """The root logger writes through erpsync's handler into a buffer; restored afterwards."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buf = io.StringIO()
    yield buf
    obs.set_overrides()
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)


def lines(buf: io.StringIO) -> list[str]:
    return [line for line in buf.getvalue().splitlines() if line]


def test_json_lines_carry_the_context_and_extra_fields(stream: io.StringIO) -> None:
    obs.setup_logging("INFO", "json", stream=stream)
    log = logging.getLogger("erpsync.test")
    with obs.log_context(tenant="acme", kind="reconcile"):
        obs.bind_log_context(run_id=17)
        log.warning("employees 42 failed: %s", "422", extra={"entity": "employees", "key": "42"})
        with obs.log_context(entity="products"):
            log.info("inner")
    log.info("outside")
    log.debug("not at INFO")

    first, inner, outside = (json.loads(line) for line in lines(stream))
    assert first["level"] == "WARNING" and first["logger"] == "erpsync.test"
    assert first["msg"] == "employees 42 failed: 422"
    assert (first["tenant"], first["run_id"], first["kind"]) == ("acme", 17, "reconcile")
    assert (first["entity"], first["key"]) == ("employees", "42")
    assert first["ts"].endswith("+00:00")
    assert (inner["entity"], inner["run_id"]) == ("products", 17)
    assert "tenant" not in outside and "run_id" not in outside  # the scope ended


def test_text_lines_append_the_context(stream: io.StringIO) -> None:
    obs.setup_logging("INFO", "text", stream=stream)
    with obs.log_context(tenant="acme", run_id=3):
        logging.getLogger("erpsync.test").warning("held", extra={"entity": "employees", "key": "7"})
    (line,) = lines(stream)
    assert " WARNING erpsync.test: held [tenant=acme run_id=3 entity=employees key=7]" in line


def test_secrets_are_masked_in_message_fields_and_tracebacks(
    stream: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    register_secret(SECRET)
    for fmt in ("json", "text"):
        stream.seek(0)
        stream.truncate()
        obs.setup_logging("DEBUG", fmt, stream=stream)
        log = logging.getLogger("erpsync.test")
        log.info("key %s in a message", SECRET, extra={"url": f"https://x/?k={SECRET}", "api_key": "plain"})
        try:
            raise RuntimeError(f"the platform echoed {SECRET}")
        except RuntimeError:
            log.exception("call failed")
        out = stream.getvalue()
        assert SECRET not in out, fmt
        assert out.count("***") >= 2, out
        assert "RuntimeError" in out  # the traceback is kept, masked
        if fmt == "json":
            first = json.loads(lines(stream)[0])
            assert first["api_key"] == "***" and first["url"] == "https://x/?k=***"  # fields too
    assert SECRET not in caplog.text  # other handlers (pytest's here) get the masked traceback too


def test_setup_is_idempotent_and_the_command_line_wins(stream: io.StringIO) -> None:
    obs.setup_logging("INFO", "text", stream=stream)
    obs.set_overrides("debug", "json")
    obs.setup_logging("WARNING", "text", stream=stream)
    ours = [h for h in logging.getLogger().handlers if h.get_name() == obs.HANDLER_NAME]
    assert len(ours) == 1
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger("erpsync.test").debug("dbg")
    assert json.loads(lines(stream)[-1])["msg"] == "dbg"
    assert logging.getLogger("httpx").level == logging.DEBUG  # chatty libraries speak at DEBUG only
    obs.set_overrides()
    obs.setup_logging("INFO", "text", stream=stream)
    assert logging.getLogger("httpx").level == logging.WARNING


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        obs.setup_logging("INFO", "yaml")
    with pytest.raises(ValueError, match="log level"):
        obs.setup_logging("LOUD", "text")


def test_log_format_setting_and_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from sync.settings import Settings

    assert Settings().log_format == "text"
    monkeypatch.setenv("ERPSYNC__LOG_FORMAT", "json")
    assert Settings().log_format == "json"
    monkeypatch.setenv("ERPSYNC__LOG_FORMAT", "xml")
    with pytest.raises(Exception, match="log_format"):
        Settings()


def test_task_outcome_summarises_results() -> None:
    summary = {
        "run_id": 12,
        "status": "partial",
        "counts": {"smartepi/employees/create/ok": 3, "smartepi/employees/update/failed": 1},
        "total_requests": 9,
    }
    assert obs.task_outcome(summary, "SUCCESS") == {
        "status": "partial",
        "run_id": 12,
        "counts": {"failed": 1, "ok": 3},
        "requests": 9,
    }
    assert obs.task_outcome({"funcionarios": 4}, "SUCCESS") == {"status": "ok", "counts": {"funcionarios": 4}}
    assert obs.task_outcome(RuntimeError("x"), "FAILURE") == {"status": "failed"}
    assert obs.task_outcome(None, "RETRY") == {"status": "retry"}


def test_task_start_and_end_lines(stream: io.StringIO) -> None:
    """The Celery signal handlers, as Celery's tracer calls them: one INFO line each, the
    context set in between (so the engine's records carry the tenant) and reset after."""

    class FakeTask:
        name = "erpsync.reconcile"

        class request:
            retries = 0

    obs.setup_logging("INFO", "json", stream=stream)
    obs._task_started(task_id="t-1", task=FakeTask(), args=("acme",), kwargs={"mode": "fast"})
    logging.getLogger("erpsync.engine").warning("inside")
    obs._task_finished(
        task_id="t-1",
        task=FakeTask(),
        retval={"run_id": 5, "status": "ok", "counts": {"smartepi/employees/update/ok": 2}},
        state="SUCCESS",
    )
    logging.getLogger("erpsync.test").info("after")
    start, inside, end, after = (json.loads(line) for line in lines(stream))
    assert start["event"] == "task_start" and start["msg"] == "reconcile of acme started"
    assert (start["tenant"], start["kind"], start["task_id"]) == ("acme", "reconcile", "t-1")
    assert inside["tenant"] == "acme" and inside["task_id"] == "t-1"
    assert end["event"] == "task_end" and end["level"] == "INFO"
    assert (end["run_id"], end["status"], end["counts"]) == (5, "ok", {"ok": 2})
    assert isinstance(end["duration_s"], float) and end["duration_s"] >= 0
    assert end["msg"].startswith("reconcile of acme finished ok in ") and "run 5, 2 ok" in end["msg"]
    assert "tenant" not in after and "task_id" not in after


def test_a_failed_task_still_names_its_run(stream: io.StringIO) -> None:
    """The engine's scope (and the run id in it) ends when the run fails; Celery's ERROR line
    and the end line come after, and still carry the run id."""

    class FakeTask:
        name = "erpsync.sync_keys"

    obs.setup_logging("INFO", "json", stream=stream)
    obs._task_started(task_id="t-2", task=FakeTask(), args=("acme", "funcionarios", ["1"]), kwargs={})
    with obs.log_context(kind="sync_keys"):  # Engine.apply
        obs.bind_log_context(tenant="acme", run_id=41)
        logging.getLogger("erpsync.engine").warning("in the run")
    try:
        raise RuntimeError("platform down")
    except RuntimeError:
        logging.getLogger("celery.app.trace").exception("Task raised unexpected")
    obs._task_finished(task_id="t-2", retval=RuntimeError("platform down"), state="FAILURE")
    logging.getLogger("erpsync.test").info("next task")
    during, error, end, after = (json.loads(line) for line in lines(stream)[1:])
    assert during["run_id"] == error["run_id"] == end["run_id"] == 41
    assert error["level"] == "ERROR" and "platform down" in error["exc"]
    assert end["status"] == "failed" and end["msg"].startswith("sync_keys of acme finished failed in ")
    assert "run_id" not in after and "tenant" not in after
