"""The few errors argus raises on purpose, each with an HTTP status and a code.

The API maps them in one place (`argus.api.errors`); the CLI prints the message.
Every message says what to fix.
"""

from __future__ import annotations

from typing import Any, Self


class ArgusError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @classmethod
    def of_field(cls, field: str, message: str) -> Self:
        """One field's problem: the message names the field, `details` carries both."""
        return cls(f"{field}: {message}", details=[{"field": field, "message": message}])


class BadRequest(ArgusError):
    status, code = 400, "bad_request"


class Unauthorized(ArgusError):
    status, code = 401, "unauthorized"


class Forbidden(ArgusError):
    status, code = 403, "forbidden"


class NotFound(ArgusError):
    status, code = 404, "not_found"


class Conflict(ArgusError):
    status, code = 409, "conflict"


class TooManyRequests(ArgusError):
    status, code = 429, "rate_limited"


class Unavailable(ArgusError):
    status, code = 503, "unavailable"


class PayloadTooLarge(ArgusError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ArgusError):
    status, code = 415, "unsupported_media_type"


class Unprocessable(ArgusError):
    status, code = 422, "invalid"


class BadGateway(ArgusError):
    status, code = 502, "bad_gateway"


class GatewayTimeout(ArgusError):
    status, code = 504, "gateway_timeout"
