"""Requests that do not decode are INVALID_ARGUMENT, not INTERNAL.

grpc-python answers INTERNAL ("Exception deserializing request!") when a request's bytes are not
a valid message (random bytes, wrong wire types, invalid UTF-8, groups nested too deep). This
interceptor wraps every method's request deserializer so that a decode failure becomes a marker
value, and the method answers INVALID_ARGUMENT before any handler code runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc


class Undecodable:
    """Stands in for a request whose bytes did not decode."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _safe(deserialize: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def decode(data: bytes) -> object:
        try:
            return deserialize(data)
        except Exception as exc:  # noqa: BLE001 - any decode failure is the client's input
            return Undecodable(type(exc).__name__)

    return decode


def _refuse(context: grpc.ServicerContext, request: Undecodable) -> None:
    context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid message of this method ({request.reason})",
    )


class DecodeGuard(grpc.ServerInterceptor):
    """Installed innermost: undecodable requests never reach a servicer."""

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        decode = _safe(handler.request_deserializer)
        respond = handler.response_serializer
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request, context):
                if isinstance(request, Undecodable):
                    _refuse(context, request)
                return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, decode, respond)
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            def stream(request, context):
                if isinstance(request, Undecodable):
                    _refuse(context, request)
                yield from inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(stream, decode, respond)

        def checked(requests: Iterator, context) -> Iterator:
            for request in requests:
                if isinstance(request, Undecodable):
                    _refuse(context, request)
                yield request

        if handler.stream_unary:
            inner_su = handler.stream_unary
            return grpc.stream_unary_rpc_method_handler(
                lambda it, context: inner_su(checked(it, context), context), decode, respond
            )
        inner_ss = handler.stream_stream
        return grpc.stream_stream_rpc_method_handler(
            lambda it, context: inner_ss(checked(it, context), context), decode, respond
        )
