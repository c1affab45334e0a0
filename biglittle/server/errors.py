"""Errors in OpenAI's shape: ApiError, the error body, and the app's exception handlers."""
from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import BigLittleError

log = logging.getLogger("biglittle.server")


class ApiError(Exception):
    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(error_body(e.message, e.type, e.param, e.code), status_code=e.status)


def as_api_error(e: BaseException) -> ApiError:
    if isinstance(e, BigLittleError):
        return ApiError(400, str(e))
    if isinstance(e, asyncio.CancelledError):  # the client went away; nobody reads this answer
        return ApiError(499, "the client closed the request", "cancelled")
    if type(e).__module__.startswith("jinja2"):  # the chat template refused the messages (e.g. roles)
        return ApiError(400, f"the chat template refused these messages: {e}", param="messages")
    return internal_error(e)


def internal_error(e: BaseException) -> ApiError:
    """A 500 that shows no internals to the client; the details go to the server's log."""
    log.error("internal error", exc_info=e)
    return ApiError(500, "internal server error", "server_error")


def event_error(kind: str, value, timeout_s: float) -> ApiError:
    """The ApiError for a job's failing event: ("timeout", None) or ("error", exception)."""
    if kind == "timeout":
        return ApiError(504, f"the request took longer than {timeout_s:g} s", "timeout_error", code="timeout")
    return as_api_error(value)


def validation_error(errs: list) -> ApiError:
    if any(err.get("type") == "json_invalid" for err in errs):
        return ApiError(400, "the request body is not valid JSON")
    msg = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:]) or 'body'}: {err['msg']}" for err in errs)
    param = ".".join(str(p) for p in errs[0]["loc"][1:]) if errs else None
    return ApiError(400, msg, param=param)  # OpenAI and vLLM answer 400, not FastAPI's 422


def install_handlers(app: FastAPI) -> None:
    """Every error leaves the server OpenAI-shaped and is counted."""

    def counted(request: Request, e: ApiError) -> JSONResponse:
        request.app.state.metrics.requests.labels(route_label(request.scope), str(e.status)).inc()
        return error_response(e)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return counted(request, e)

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, e: RequestValidationError):
        return counted(request, validation_error(e.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, e: Exception):
        return counted(request, internal_error(e))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        kind = "not_found_error" if e.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(e.detail), kind), status_code=e.status_code)


def route_label(scope) -> str:
    """The metrics label for a request: its route's template, never the raw path (random paths
    would make a series each)."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
