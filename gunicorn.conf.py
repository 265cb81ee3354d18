"""gunicorn settings: ``gunicorn -c gunicorn.conf.py 'service.app:create_app()'``.

Sets up prometheus_client's multiprocess mode so ``/metrics`` sums every worker's samples
(see service/prometheus_metrics.py), and makes gunicorn's own log lines JSON like the app's.
Workers, bind address and the rest stay on the command line / gunicorn's usual variables.
"""

import glob
import os
import shutil
import tempfile

# Before anything imports prometheus_client (the workers import the app after this file ran):
# it chooses its multiprocess value storage at import time. Without a directory from the
# environment each server start gets a fresh one, removed at exit.
_created_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _created_dir = tempfile.mkdtemp(prefix="artwork-prometheus-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _created_dir

from gunicorn.glogging import Logger  # noqa: E402


class AppWritesAccessLines(Logger):
    """The app writes its own JSON access line (with the request id); gunicorn's would duplicate
    it, and gunicorn formats its access atoms whenever a log config is set, even with no access
    log: a few percent of a worker's time under load."""

    def access(self, resp, req, environ, request_time) -> None:
        return None


logger_class = AppWritesAccessLines
accesslog = None
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "service.json_logging.JsonFormatter"}},
    "handlers": {
        "error_console": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False, "qualname": "gunicorn.error"},
    },
    "root": {"level": "INFO", "handlers": []},
}


def on_starting(server) -> None:
    # Samples of a previous run in a reused directory would be summed into this one's.
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "*.db")):
        os.remove(path)


def child_exit(server, worker) -> None:
    # Drops the dead worker's live gauges; its counters stay in the sums.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    if _created_dir is not None:
        shutil.rmtree(_created_dir, ignore_errors=True)

# The documented largest batch (50 titles of 128 characters) is a ~7 KB request line, beyond
# gunicorn's default 4094 bytes (an HTML 414 page). 8190 is gunicorn's maximum; longer queries
# (percent-encoded ids, much context) take the batch as a JSON body: POST /artwork.
limit_request_line = 8190
