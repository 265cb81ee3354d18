"""A real HTTP server (werkzeug, threaded) around the app, for the official Personalizer SDKs."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from werkzeug.serving import make_server

API_KEY = "pz-test-key"


@contextmanager
def serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)
        server.server_close()
