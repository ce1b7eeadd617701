"""`serve`: Chalice's local server, keep-alive safe, plus a scheduler for the schedules.

The request handler (chalicelib.local_handler) disables Nagle's algorithm and buffers each
response, so it leaves in one send; it answers the server's own errors (unknown path,
malformed request, over-long lines, unsupported methods) in the API's JSON error shape and
logs each request without its query string. A client has `client_timeout_s` (30 s) to send
each request whole; a connection the client resets is one INFO line, without the client's
address or a traceback. Each connection's thread sees its own
current_request. `chalice local` runs no schedules, so a thread invokes the app's scheduled
handlers with real EventBridge scheduled-event payloads.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import importlib
import logging
import os
import sys
import threading
import uuid
from typing import Any, Callable

from chalice.app import Chalice
from chalice.local import LocalChalice, LocalDevServer, ThreadedHTTPServer

from chalicelib import runtime
from chalicelib.import_boundary import import_request_and_job_modules
from chalicelib.local_handler import KeepAliveRequestHandler
from chalicelib.observability import error_fields
from chalicelib.request_deadline import DEFAULT_CLIENT_TIMEOUT_S
from chalicelib.settings import get_settings

log = logging.getLogger(__name__)

__all__ = ["KeepAliveRequestHandler", "LocalScheduler", "scheduled_event", "serve", "thread_local_requests"]


def scheduled_event(rule_name: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """An EventBridge 'Scheduled Event' payload as Lambda receives it."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule_name}"], "detail": {},
    }


class LocalScheduler(threading.Thread):
    """Invokes the app's scheduled handlers at their intervals (first run at start)."""

    def __init__(self, app: Chalice, intervals: dict[str, float]) -> None:
        super().__init__(name="local-scheduler", daemon=True)
        self.app = app
        self.intervals = intervals
        self.stopped = threading.Event()

    def run(self) -> None:
        next_run = {name: 0.0 for name in self.intervals}
        clock = 0.0
        while not self.stopped.is_set():
            for name, interval in self.intervals.items():
                if clock >= next_run[name]:
                    next_run[name] = clock + interval
                    self.invoke(name)
            self.stopped.wait(1.0)
            clock += 1.0

    def invoke(self, name: str) -> Any:
        """Run one scheduled handler as Lambda would. Whatever it raises is caught here, so
        the next run comes as scheduled: the handler (`log_scheduled`) has already logged it
        as its one ERROR line; this adds a WARNING that the scheduler carries on."""
        try:
            handler = getattr(importlib.import_module("app"), name)
            return handler(scheduled_event(name), _LocalContext(name))
        except Exception as exc:  # noqa: BLE001 - keep the scheduler alive
            _note_failed_run(name, exc)
            return None


def _note_failed_run(name: str, exc: Exception) -> None:
    """Log that a scheduled run raised (its name and the exception's type only). Never
    raises: a failing log handler must not end the scheduler's thread."""
    with contextlib.suppress(Exception):
        log.warning("scheduled handler %s raised %s; the next run is due as scheduled", name, type(exc).__name__)


class _LocalContext:
    def __init__(self, name: str) -> None:
        self.function_name = name
        self.aws_request_id = str(uuid.uuid4())
        self.memory_limit_in_mb = 128
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


# What a client does to its connection that is no fault of the server's.
_CLIENT_RESETS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class BacklogHTTPServer(ThreadedHTTPServer):
    """Chalice's threaded server with a listen backlog for bursts of new clients (the
    socketserver default of 5 resets the sixth simultaneous connect) and daemon threads,
    so an idle keep-alive client never holds the process at exit. Its handler gives each
    request `client_timeout_s` to arrive whole."""

    request_queue_size = 128
    daemon_threads = True

    def __init__(self, server_address: tuple[str, int], handler_cls: Callable[..., Any],
                 client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S) -> None:
        self.client_timeout_s = client_timeout_s
        super().__init__(server_address, handler_cls)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a connection that ended in an exception, never with the client's address or a
        traceback (socketserver prints both): a client's reset as one INFO line, any other
        failure as an error with its type and code locations. Never raises, so the request
        thread ends normally."""
        exc = sys.exc_info()[1]
        with contextlib.suppress(Exception):
            if isinstance(exc, _CLIENT_RESETS):
                log.info("client closed the connection abruptly", extra={"error_type": type(exc).__name__})
            elif exc is not None:
                log.error("connection handler failed", extra=error_fields(exc))


def thread_local_requests(app_obj: Chalice) -> Chalice:
    """Give `app_obj` a current_request per thread, as `chalice local` does (its
    create_local_server): Chalice keeps the request in one attribute of the app, and the
    local server answers each connection in its own thread, so without this a view could
    read another connection's request (its query and Authorization header). Returns it."""
    if not isinstance(app_obj, LocalChalice):
        app_obj.__class__ = type(f"ThreadLocal{type(app_obj).__name__}", (LocalChalice, type(app_obj)), {})
    return app_obj


def serve(host: str, port: int, stage: str = "dev", schedules: bool = True,
          client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S) -> None:
    """Serve the API like `chalice local` with Nagle disabled, plus the local scheduler;
    a request not whole within `client_timeout_s` answers 408. Everything requests and jobs
    import is imported before the port opens and before the scheduler starts
    (chalicelib.import_boundary): its threads never race an import."""
    from chalice.cli.factory import CLIFactory

    project_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    factory = CLIFactory(project_dir=project_dir)
    config = factory.create_config_obj(chalice_stage_name=stage)
    for key, value in config.environment_variables.items():
        os.environ.setdefault(key, value)
    runtime.reset()  # the stage's variables are in the environment now
    get_settings()  # the stage's variables are checked too: SettingsError before serving
    app_obj = thread_local_requests(factory.load_chalice_app())
    import_request_and_job_modules()
    server_cls = functools.partial(BacklogHTTPServer, client_timeout_s=client_timeout_s)
    server = LocalDevServer(app_obj, config, host, port, handler_cls=KeepAliveRequestHandler,
                            server_cls=server_cls)
    if schedules:
        intervals = {
            "refresh_views": float(os.environ.get("LOCAL_REFRESH_INTERVAL", "60")),
            "extend_slots": float(os.environ.get("LOCAL_EXTEND_INTERVAL", "86400")),
        }
        LocalScheduler(app_obj, intervals).start()
    server.serve_forever()
