"""The detection service (FastAPI): ``create_app(detector, settings)``."""

from .app import ServiceSettings, create_app, load_api_keys, public_model_name, run_service

__all__ = ["ServiceSettings", "create_app", "load_api_keys", "public_model_name", "run_service"]
