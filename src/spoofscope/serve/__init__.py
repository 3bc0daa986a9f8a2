"""The detection service (FastAPI): ``create_app(detector, settings)``.

Names are imported on first use (see :mod:`spoofscope._lazy`), so that the audit trail
(:mod:`.audit`, ``spoofscope audit``) reads its database without the ``serve`` extra."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from .app import ServiceSettings, create_app, load_api_keys, public_model_name, run_service

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        ".app": [
            "ServiceSettings",
            "create_app",
            "load_api_keys",
            "public_model_name",
            "run_service",
        ]
    },
)

__all__ = ["ServiceSettings", "create_app", "load_api_keys", "public_model_name", "run_service"]
