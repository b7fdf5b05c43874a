"""The middleware chain of the in-memory broker: the stages every publish passes before
delivery (a mixin of :class:`otp.InMemoryBroker`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._envelopes import DeadLetter, Envelope, Middleware

__all__ = ["MiddlewareChain"]


class MiddlewareChain:
    """The stages of a broker's middleware chain (:meth:`use`, :meth:`remove_middleware`)
    and how a publish runs them; a mixin of :class:`otp.InMemoryBroker`, which provides
    what is declared here."""

    #: The installed stages, in order (a tuple: publish reads it without copying).
    _stages: tuple[Middleware, ...] = ()
    #: Messages a stage dropped.
    _filtered: int = 0
    # Provided by the broker.
    _dead_letter: Callable[[DeadLetter], None]

    def use(self, stage: Middleware) -> Middleware:
        """Append ``stage`` to the middleware chain and return it (usable as a decorator).

        Every publish (requests, replies and broadcasts included; dead letters excluded)
        passes the stages in order before delivery. A stage gets the :class:`Envelope`
        and returns it, a changed one (``attrs.evolve``; a new ``topic`` re-routes it) or
        ``None`` to drop the message, which is counted in ``filtered`` and recorded as a
        dead letter with reason ``"dropped_by_middleware"``. A stage may be sync or async;
        an exception it raises reaches the publisher and nothing is delivered. Broadcasts
        carry the topic :data:`BROADCAST`.
        """
        if not callable(stage):
            raise TypeError(f"a middleware stage must be callable, not {stage!r}")
        self._stages = (*self._stages, stage)
        return stage

    def remove_middleware(self, stage: Middleware) -> None:
        """Take ``stage`` out of the chain. Raises ``ValueError`` if it is not in it."""
        stages = list(self._stages)
        try:
            stages.remove(stage)
        except ValueError:
            raise ValueError(
                f"middleware {stage!r} is not installed on {self!r}; add it with use()"
            ) from None
        self._stages = tuple(stages)

    @property
    def middleware(self) -> tuple[Middleware, ...]:
        """The installed stages, in the order they run."""
        return self._stages

    async def _run_stages(self, envelope: Envelope) -> Envelope | None:
        for stage in self._stages:
            result = stage(envelope)
            if inspect.isawaitable(result):
                result = await result
            next_envelope = self._stage_result(stage, envelope, result)
            if next_envelope is None:
                return None
            envelope = next_envelope
        return envelope

    def _stage_result(self, stage: Any, envelope: Envelope, result: Any) -> Envelope | None:
        # What a stage returned: the (maybe changed) envelope, or None to drop it.
        if result is None:
            self._filtered += 1
            self._dead_letter(
                DeadLetter(envelope.message, stage, "dropped_by_middleware", topic=envelope.topic)
            )
            return None
        if not isinstance(result, Envelope):
            raise TypeError(
                f"middleware {stage!r} returned {result!r}; a stage must return the "
                "envelope (changed with attrs.evolve if need be) or None to drop it"
            )
        return result

    def _run_stages_nowait(self, envelope: Envelope) -> Envelope | None:
        for stage in self._stages:
            result = stage(envelope)
            if inspect.isawaitable(result):
                if inspect.iscoroutine(result):
                    result.close()
                raise TypeError(
                    f"middleware {stage!r} is asynchronous; publish_nowait cannot await it: "
                    "use await broker.publish(...)"
                )
            next_envelope = self._stage_result(stage, envelope, result)
            if next_envelope is None:
                return None
            envelope = next_envelope
        return envelope
