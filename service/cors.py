"""CORS for the front-end calls: which origin a response to ``/artwork``, ``/reward`` or ``/activate`` allows."""

from __future__ import annotations

from flask import Flask, Response, request

CORS_PATHS = ("/artwork", "/reward", "/activate")


def allowed_origin(origins: tuple[str, ...], origin: str | None) -> str | None:
    """The ``Access-Control-Allow-Origin`` value for a request's ``Origin``; None: no CORS
    headers. A named origin (not ``*``) also needs ``Vary: Origin``."""
    if origin is None:
        return None
    if "*" in origins:
        return "*"
    return origin if origin in origins else None


def register_cors(app: Flask, origins: tuple[str, ...]) -> None:
    @app.after_request
    def cors(response: Response) -> Response:
        if request.path not in CORS_PATHS:
            return response
        if request.path == "/artwork":
            response.headers["Cache-Control"] = "no-store"
        allowed = allowed_origin(origins, request.headers.get("Origin"))
        if allowed is None:
            return response
        response.headers["Access-Control-Allow-Origin"] = allowed
        if allowed != "*":
            response.headers.add("Vary", "Origin")
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                "Access-Control-Request-Headers", "Content-Type"
            )
            response.headers["Access-Control-Max-Age"] = "600"
        return response
