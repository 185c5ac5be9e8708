"""Health endpoints for orchestrators: liveness (the process answers) and readiness
(the state database and Redis answer). Readiness reports each check by name with the
exception class only, never a URL or a message that might carry a credential."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse

Check = Callable[[], None]
CHECK_TIMEOUT = 3.0


def make_health_router(checks: Mapping[str, Check], *, timeout: float = CHECK_TIMEOUT) -> APIRouter:
    router = APIRouter()

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready", response_model=None)
    async def ready() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks.items():
            try:
                with anyio.fail_after(timeout):
                    await anyio.to_thread.run_sync(check, abandon_on_cancel=True)
                results[name] = "ok"
            except TimeoutError:
                results[name] = "fail: timeout"
            except Exception as exc:
                results[name] = f"fail: {type(exc).__name__}"
        ok = all(v == "ok" for v in results.values())
        return JSONResponse(
            {"status": "ready" if ok else "unavailable", "checks": results}, status_code=200 if ok else 503
        )

    return router
