"""The HTTP server: REST API, OTLP endpoint, web UI, authentication and roles."""

from prodloop.server.app import create_app
from prodloop.server.auth import Permission, Principal, Role, authenticate, bootstrap_admin, create_api_key

__all__ = [
    "Permission",
    "Principal",
    "Role",
    "authenticate",
    "bootstrap_admin",
    "create_api_key",
    "create_app",
]
