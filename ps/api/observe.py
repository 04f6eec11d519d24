"""gRPC request metrics (count by method and code, duration) as a server interceptor."""

from __future__ import annotations

import time

import grpc

from ps.metrics import ServiceMetrics


def _code(context: grpc.ServicerContext) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "OK"


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts every request by (method, final status code) and times it (streams: to the end).

    Installed outermost, so requests that authentication refuses are counted too.
    """

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def _record(self, method: str, context, started: float, failed: bool) -> None:
        code = _code(context)
        if failed and code == "OK":
            code = "UNKNOWN"
        self.metrics.grpc_requests.labels(method, code).inc()
        self.metrics.grpc_duration.labels(method).observe(time.perf_counter() - started)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]

        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request, context):
                started, failed = time.perf_counter(), True
                try:
                    reply = inner(request, context)
                    failed = False
                    return reply
                finally:
                    self._record(method, context, started, failed)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request, context):
                started, failed = time.perf_counter(), True
                try:
                    yield from inner_stream(request, context)
                    failed = False
                finally:
                    self._record(method, context, started, failed)

            return grpc.unary_stream_rpc_method_handler(
                stream, handler.request_deserializer, handler.response_serializer
            )
        return handler  # client-streaming methods: none in this service
