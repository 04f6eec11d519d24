"""The /metrics HTTP endpoint: same host policy as gRPC, bearer token when one is configured."""

from __future__ import annotations

import contextlib
import hmac
import threading
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - scrapes every few seconds would flood logs
        pass


def _with_token(app, token: str):
    expected = f"Bearer {token}".encode()

    def guarded(environ, start_response):
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(given, expected):
            start_response(
                "401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")]
            )
            return [b"missing or invalid bearer token\n"]
        return app(environ, start_response)

    return guarded


@contextlib.contextmanager
def serve_metrics(
    registry: CollectorRegistry, host: str, port: int, token: str | None
) -> Iterator[int]:
    """Serve ``registry`` at http://host:port/metrics in a thread; yields the bound port."""
    app = make_wsgi_app(registry)
    if token:
        app = _with_token(app, token)
    httpd = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="ps-metrics", daemon=True)
    thread.start()
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
