"""Errors in OpenAI's JSON shape: {"error": {"message", "type", "param", "code"}}.

Pure: builds bodies and carries status + headers; app.py turns them into responses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

INVALID = "invalid_request_error"
SERVER = "server_error"


class ApiError(Exception):
    """An error answer: HTTP status, OpenAI error body fields, extra headers."""

    def __init__(self, status: int, message: str, *, type_: str = INVALID,
                 code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type_: str = INVALID, param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """The OpenAI error document."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def invalid_json(detail: str) -> ApiError:
    return ApiError(400, f"We could not parse the JSON body of your request: {detail}",
                    code="invalid_json")


def missing_field(name: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{name}'.", param=name,
                    code="missing_required_parameter")


def wrong_type(name: str, expected: str) -> ApiError:
    return ApiError(400, f"Invalid type for '{name}': expected {expected}.", param=name,
                    code="invalid_type")


def invalid_api_key() -> ApiError:
    return ApiError(401, "Incorrect or missing API key: send 'Authorization: Bearer <api_key>' "
                    "or 'x-api-key: <api_key>'.",
                    code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})


def mesh_auth_failed(reason: str) -> ApiError:
    return ApiError(401, f"Node-to-node authentication failed: {reason}.",
                    code="mesh_auth_failed")


def mesh_seal_failed(reason: str) -> ApiError:
    return ApiError(400, f"Node-to-node sealing failed: {reason}.", code="mesh_seal_failed")


def mesh_auth_busy(reason: str) -> ApiError:
    return ApiError(503, f"Node-to-node authentication is saturated: {reason}.", type_=SERVER,
                    code="mesh_auth_busy", headers={"Retry-After": "1"})


def model_not_found(name: str, available: Iterable[str]) -> ApiError:
    names = sorted(available)
    listing = ", ".join(names) if names else "(none)"
    return ApiError(404, f"The model '{name}' does not exist in this mesh. Available models: "
                    f"{listing}.", param="model", code="model_not_found")


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body exceeds {limit} bytes.", code="request_too_large")


def no_ready_host(model: str, retry_after: int) -> ApiError:
    return ApiError(503, f"No host of '{model}' is ready yet; retry shortly.", type_=SERVER,
                    code="no_ready_host", headers={"Retry-After": str(retry_after)})


def model_unservable(model: str, reason: str) -> ApiError:
    """The planner says the model cannot be placed at all: no retry will help (the OpenAI
    clients honour x-should-retry), so it is said at once, with the planner's reason."""
    return ApiError(503, f"The model '{model}' cannot be loaded on this mesh: {reason}.",
                    type_=SERVER, code="model_unservable", headers={"x-should-retry": "false"})


def load_timeout(model: str, seconds: float, reason: str) -> ApiError:
    return ApiError(503, f"The model '{model}' did not become ready within {seconds:g} s "
                    f"({reason or 'still loading'}); retry shortly.", type_=SERVER,
                    code="load_timeout", headers={"Retry-After": "5"})


def not_hosted_here(model: str) -> ApiError:
    return ApiError(503, f"This node does not host '{model}' and does not re-forward.",
                    type_=SERVER, code="not_hosted_here", headers={"Retry-After": "1"})


def upstream_timeout(model: str) -> ApiError:
    return ApiError(504, f"The host of '{model}' did not answer in time.", type_=SERVER,
                    code="upstream_timeout")


def route_not_found(path: str) -> ApiError:
    return ApiError(404, f"Unknown path: {path}.", code="unknown_url")


def method_not_allowed(method: str, path: str) -> ApiError:
    return ApiError(405, f"Method {method} is not allowed on {path}.", code="method_not_allowed")
