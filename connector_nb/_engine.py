"""The engine loop: one asyncio loop in a daemon thread per process, and the sync<->async bridges.

Polling lives here so that a cell blocking the kernel (pandas for a minute, ``time.sleep``) does not stop
it. Blocking twins of coroutine methods are made by :func:`blocking` rather than written twice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import threading
from typing import Any, Callable, Concatenate, Coroutine, Generic, ParamSpec, TypeVar

from .errors import EngineError, SessionClosedError

P = ParamSpec("P")
R = TypeVar("R")


class Engine:
    """A reference-counted loop thread: started by the first session, stopped when the last one closes."""

    def __init__(self, name: str = "connector-nb-engine") -> None:
        """A loop thread called ``name`` (started on first ``acquire``)."""
        self.name = name
        self._lock = threading.Lock()
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The running loop (EngineError before the first session)."""
        if self._loop is None:
            raise EngineError("the engine loop is not running; create a Session first")
        return self._loop

    @property
    def running(self) -> bool:
        """Whether the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def acquire(self) -> asyncio.AbstractEventLoop:
        """Count one more user, starting the loop thread if it is the first; returns the loop."""
        with self._lock:
            self._users += 1
            if self._loop is None:
                self._start()
            return self._loop  # type: ignore[return-value]

    def release(self) -> None:
        """Count one user less, stopping the loop thread with the last one."""
        with self._lock:
            self._users = max(0, self._users - 1)
            if self._users == 0 and self._loop is not None:
                self._stop()

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.run_until_complete(_drain(loop))
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._thread = threading.Thread(target=main, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    def _stop(self) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        assert loop is not None and thread is not None
        if thread is threading.current_thread():
            loop.call_soon(loop.stop)  # closing from a callback on the loop: cannot join ourselves
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


async def _drain(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()


ENGINE = Engine()


def in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether ``loop`` is the loop running in the calling thread (blocking on it would deadlock)."""
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def running_loop(what: str) -> asyncio.AbstractEventLoop:
    """The caller's running loop; EngineError (naming ``what`` and the blocking alternative) if there is none."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        raise EngineError(f"{what} must be created inside a running event loop; use Session otherwise") from None


async def construct(cls: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """``cls(*args, **kwargs)`` made on the loop that runs this coroutine (for objects bound to their loop)."""
    return cls(*args, **kwargs)


def run_blocking(coro: Coroutine[Any, Any, R], loop: asyncio.AbstractEventLoop, timeout: float | None = None) -> R:
    """Run ``coro`` on ``loop`` (another thread's) and wait for its result."""
    if in_loop_thread(loop):
        coro.close()
        raise EngineError(
            "a blocking call was made from inside the loop that must serve it, which would deadlock; "
            "use the `await` form (e.g. `await run.wait_async()` or AsyncSession) instead"
        )
    if loop.is_closed():
        coro.close()
        raise SessionClosedError("the session is closed (its loop has stopped); create a new Session")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        if future.done():  # the coroutine's own TimeoutError (e.g. CallTimeoutError), not our wait
            raise
        future.cancel()
        raise TimeoutError(f"no result within {timeout} s") from None
    except KeyboardInterrupt:
        future.cancel()  # an interrupted cell must not leave the engine doing its work
        raise


async def await_on(coro: Coroutine[Any, Any, R], loop: asyncio.AbstractEventLoop) -> R:
    """Await ``coro`` on ``loop`` from any loop, without blocking the caller's loop."""
    if in_loop_thread(loop):
        return await coro
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


def blocking(
    fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], *, via: str | None = None
) -> Callable[Concatenate[Any, P], R]:
    """Make the blocking twin of an async method.

    The owner needs a ``_loop``; with ``via``, the coroutine is taken from ``getattr(self, via)``
    (``Session`` delegates to its ``AsyncSession`` this way).
    """

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        target = getattr(self, via) if via else self
        return run_blocking(fn(target, *args, **kwargs), self._loop)

    functools.update_wrapper(method, fn)
    method.__doc__ = f"Blocking form of ``{fn.__name__}``. " + (fn.__doc__ or "")
    return method


def bridged(
    fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, R]]:
    """Make the ``*_async`` form of a coroutine method: awaitable from any loop, run on the owner's ``_loop``.

    The work never touches the caller's loop, so loop-bound state (events, gRPC channels) stays on one loop.
    """

    async def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await await_on(fn(self, *args, **kwargs), self._loop)

    functools.update_wrapper(method, fn)
    return method


def dual(
    fn: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]], *, interrupted: str | None = None
) -> Callable[Concatenate[Any, P], Any]:
    """One method for sync and async callers (dask's ``SyncMethodMixin``).

    Called on the owner's loop (``AsyncSession``, or code running on the engine), it returns the awaitable;
    anywhere else it blocks and returns the result. With ``interrupted``, a KeyboardInterrupt while blocking
    is handed to ``getattr(self, interrupted)(error, *args, **kwargs)``, which returns what to raise.
    """

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> Any:
        coro = fn(self, *args, **kwargs)
        if in_loop_thread(self._loop):
            return coro
        try:
            return run_blocking(coro, self._loop)
        except KeyboardInterrupt as e:
            if interrupted is None:
                raise
            raise getattr(self, interrupted)(e, *args, **kwargs) from None

    functools.update_wrapper(method, fn)
    return method


def submit(
    coro: Coroutine[Any, Any, R], loop: asyncio.AbstractEventLoop,
    callback: Callable[[concurrent.futures.Future[R]], None] | None = None,
) -> concurrent.futures.Future[R]:
    """Run ``coro`` on ``loop`` from any thread; ``callback(future)`` is called when it ends."""
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    if callback is not None:
        future.add_done_callback(callback)
    return future


class Same(Generic[R]):
    """A facade attribute that reads the same attribute of the object it wraps (``getattr(self, via)``)."""

    def __init__(self, via: str) -> None:
        self.via = via

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> R:
        return getattr(getattr(obj, self.via), self.name)  # type: ignore[no-any-return]


def same(fn: Callable[Concatenate[Any, P], R], *, via: str) -> Callable[Concatenate[Any, P], R]:
    """A facade method that calls the same non-blocking method of the object it wraps."""

    def method(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return fn(getattr(self, via), *args, **kwargs)

    functools.update_wrapper(method, fn)
    return method
