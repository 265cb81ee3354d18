"""Baselines for bench_service.py: the same Flask + gunicorn stack doing (almost) nothing."""

from __future__ import annotations

import os

import redis
from flask import Flask, jsonify


def create_baseline_app() -> Flask:
    app = Flask(__name__)
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), socket_timeout=0.25)

    @app.get("/hello")
    def hello():
        return jsonify({"hello": "world"})

    @app.get("/one-round-trip")
    def one_round_trip():
        # One Redis round trip, as a minimal real endpoint would make.
        return jsonify({"value": client.incr("bench:{baseline}:counter")})

    return app
