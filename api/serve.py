"""uvicorn factory for multi-worker runs (`vreserve serve --workers N`): settings from VR_*."""
from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from vreserve.settings import Settings


def app_from_env() -> FastAPI:
    return create_app(Settings.from_env())
