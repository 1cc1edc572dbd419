"""Limits on the server's long-lived service streams: ``grpc.health.v1.Health/Watch`` and server reflection.

Both are offered to everyone and each open stream holds server memory (~22 KB while idle) for as long as the
client keeps it open; unbounded, 10,000 idle watchers from one address grew a trainer by 223 MB, outside the
memory budget. A server interceptor counts them per client address and in total (``--max-watchers``,
``--max-watchers-per-peer``) and answers RESOURCE_EXHAUSTED past either limit, with a retry hint; unary
``Health/Check`` and ``GetInfo`` are not counted and keep answering (README "Limits").
"""

from __future__ import annotations

import inspect

import grpc

from protocol import convert

from .admission import Admission, Overloaded, peer_host

WATCH_METHODS = frozenset({
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
})


class WatcherLimit(grpc.aio.ServerInterceptor):
    def __init__(self, admission: Admission):
        self.admission = admission

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None or details.method not in WATCH_METHODS:
            return handler
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._wrap(handler.unary_stream))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=self._wrap(handler.stream_stream))
        return handler

    async def _admit(self, context) -> str | None:
        peer = peer_host(context.peer())
        try:
            self.admission.enter_watcher(peer)
        except Overloaded as e:
            context.set_trailing_metadata(((convert.RETRY_AFTER_KEY, str(int(e.retry_after * 1000))),))
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(e))
        return peer

    def _wrap(self, behavior):
        if inspect.isasyncgenfunction(behavior):  # reflection: an async generator of responses
            async def gen(request, context):
                peer = await self._admit(context)
                try:
                    async for item in behavior(request, context):
                        yield item
                finally:
                    self.admission.exit_watcher(peer)
            return gen

        async def call(request, context):  # Health/Watch: a coroutine writing with context.write
            peer = await self._admit(context)
            try:
                return await behavior(request, context)
            finally:
                self.admission.exit_watcher(peer)
        return call
