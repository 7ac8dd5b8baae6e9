"""Admission control of the built-in server: a cap on requests in flight and a per-request deadline.

A burst of requests must not exhaust memory: each admitted request holds a decoded body and the model's tensors,
so at most `max_in_flight` are admitted; the others are refused at once with 429 and Retry-After, before their
body is read. An admitted request is worked on by one of `max_in_flight` worker threads; if it is not done within
`timeout_s` the client gets 504. A TensorFlow call cannot be interrupted, so the late work runs to its end and its
result is discarded; its slot is freed only then, so abandoned work still counts against the cap and the number of
threads and the memory in use stay bounded whatever the clients do.
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import Callable, TypeVar

from mammo_tfx.serving.errors import DeadlineExceeded, TooManyRequests

_T = TypeVar("_T")
# Seconds a refused client is asked to wait: long enough for a typical predict call to finish.
RETRY_AFTER_S = 1


class InFlightLimiter:
    """At most `max_in_flight` admitted requests at once, each answered within `timeout_s` seconds."""

    def __init__(self, max_in_flight: int, timeout_s: float) -> None:
        self.max_in_flight = max_in_flight
        self.timeout_s = timeout_s
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._workers = concurrent.futures.ThreadPoolExecutor(max_workers=max_in_flight,
                                                              thread_name_prefix="predict")

    def enter(self) -> None:
        """Take a slot or raise TooManyRequests; the caller must then `run` or `leave`."""
        if not self._slots.acquire(blocking=False):
            raise TooManyRequests(
                f"{self.max_in_flight} requests are already in flight (serving.max_in_flight); retry later",
                headers={"Retry-After": str(RETRY_AFTER_S)})

    def leave(self) -> None:
        """Give back the slot of a request that will not `run` (e.g. its body could not be read)."""
        self._slots.release()

    def run(self, work: Callable[[], _T]) -> _T:
        """Run `work` in the slot taken by `enter`; its errors propagate. The slot is freed when `work` ends, even if
        the caller stopped waiting for it (DeadlineExceeded)."""
        try:
            future = self._workers.submit(work)
        except RuntimeError:  # the server is shutting down
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        try:
            return future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            raise DeadlineExceeded(
                f"the request was not answered within {self.timeout_s:g} s (serving.request_timeout_s); "
                "its result will be discarded") from None

    def shutdown(self) -> None:
        """Stop taking work; calls still running finish in their threads, unwaited."""
        self._workers.shutdown(wait=False, cancel_futures=True)
