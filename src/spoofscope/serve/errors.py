"""The service's one error shape: ``{"error": {"code": ..., "message": ...}}``."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class ServiceError(Exception):
    """An error answered with ``status`` and the JSON error body (and optional headers)."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def error_response(status: int, code: str, message: str, headers=None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


#: a detection result's ``error_kind`` -> (HTTP status, error code)
STATUS_OF_KIND = {
    "too_long": (413, "audio_too_long"),
    "empty": (422, "empty_audio"),
    "invalid": (415, "unsupported_audio"),
    "invalid_samples": (422, "invalid_samples"),
    "timeout": (504, "deadline_exceeded"),
    "shutting_down": (503, "shutting_down"),
    "missing": (422, "missing_file"),
    "internal": (500, "internal_error"),
}
