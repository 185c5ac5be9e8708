"""The Celery configuration invariants (design §3) and the beat schedule built from settings."""

from __future__ import annotations

from typing import Any

import pytest

from sync.celery_app import celeryconfig_module
from sync.errors import ConfigError
from sync.settings import Settings

celeryconfig = celeryconfig_module()  # top level of the repository, not a package module

TENANT = {
    "erp": {"kind": "sql", "url": "sqlite:///erp.db"},
    "mappings": ["m.yaml"],
    "smartepi": {"base_url": "http://127.0.0.1:1", "api_key": "k" * 12},
}


def settings(**celery: Any) -> Settings:
    files = {**TENANT, "erp": {"kind": "files", "directory": "/tmp"}}
    return Settings(
        redis_url="redis://127.0.0.1:6379/3",
        celery=celery,
        tenants={
            "acme": {**TENANT, "schedule": {"fast_reconcile_seconds": 60, "full_reconcile_seconds": 600}},
            "globex": files,
        },
    )


def test_redelivery_invariants() -> None:
    conf = celeryconfig.build_config(settings(task_time_limit=100, visibility_timeout=150), namespace="ns")
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["accept_content"] == ["json"] and conf["result_accepted_content"] == ["json"]
    # One visibility timeout everywhere, above the longest task.
    vts = {
        conf["broker_transport_options"]["visibility_timeout"],
        conf["result_backend_transport_options"]["visibility_timeout"],
    }
    assert vts == {150}
    assert conf["task_soft_time_limit"] < conf["task_time_limit"] == 100 < 150
    assert conf["broker_transport_options"]["unacked_restore_interval"] < 150
    # A worker killed inside the restore sweep blocks redelivery for the mutex's life only.
    assert conf["broker_transport_options"]["unacked_mutex_expire"] == 37 <= 150 // 4
    long = celeryconfig.build_config(settings(task_time_limit=100, visibility_timeout=3600), namespace="ns")
    assert long["broker_transport_options"]["unacked_mutex_expire"] == 300  # kombu's default, never more
    # A beat trigger older than its own interval is dropped, not run late.
    assert all(e["options"]["expires"] == e["schedule"] for e in conf["beat_schedule"].values())


def test_separate_queues_and_routes() -> None:
    conf = celeryconfig.build_config(settings(), namespace="ns")
    assert {q.name for q in conf["task_queues"]} == {"events", "reconcile", "inbound"}
    routes = conf["task_routes"]
    assert routes["erpsync.sync_keys"]["queue"] == "events"
    assert routes["erpsync.reconcile"]["queue"] == "reconcile"
    assert routes["erpsync.apply_inbound"]["queue"] == "inbound"
    assert conf["task_create_missing_queues"] is False


def test_every_redis_key_is_namespaced() -> None:
    conf = celeryconfig.build_config(settings(), namespace="blue")
    assert conf["broker_transport_options"]["global_keyprefix"] == "blue:"
    assert conf["result_backend_transport_options"]["global_keyprefix"] == "blue:"
    stock = celeryconfig.build_config(settings())
    assert "global_keyprefix" not in stock["broker_transport_options"]


def test_beat_schedule_per_tenant_from_settings() -> None:
    beat = celeryconfig.build_config(settings(), namespace="ns")["beat_schedule"]
    fast, full = beat["acme:reconcile-fast"], beat["acme:reconcile-full"]
    assert (fast["task"], fast["schedule"], fast["args"], fast["kwargs"]) == (
        "erpsync.reconcile",
        60.0,
        ("acme",),
        {"mode": "fast"},
    )
    assert (full["schedule"], full["kwargs"], full["options"]["queue"]) == (
        600.0,
        {"mode": "full"},
        "reconcile",
    )
    assert beat["globex:reconcile-fast"]["schedule"] == 300.0  # the default schedule
    assert "acme:watermarks" in beat and "globex:watermarks" not in beat  # SQL sources only
    assert beat["acme:pull"]["options"]["queue"] == "inbound"
    assert beat["relay-inbox"]["task"] == "erpsync.relay_inbox" and beat["relay-inbox"]["args"] == ()


def test_tasks_are_registered_under_the_routed_names() -> None:
    from sync.celery_app import configure

    app = configure(settings())
    app.loader.import_default_modules()
    assert set(celeryconfig.TASK_ROUTES) <= set(app.tasks)


def test_redis_is_required() -> None:
    with pytest.raises(ConfigError):
        celeryconfig.build_config(Settings(), namespace="ns")


def test_visibility_timeout_not_above_time_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        settings(task_time_limit=100, visibility_timeout=100)
