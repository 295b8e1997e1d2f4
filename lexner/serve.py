"""An HTTP service for a tagger (``pip install -e ".[serve]"``; ``lexner serve [--model DIR] [--port N]``).

* ``POST /tag`` with ``{"text": "..."}`` → ``{"entities": [...]}``, or ``{"texts": ["...", ...]}`` →
  ``{"results": [[...], ...]}``; ``"labels": NAME`` picks a head of a multi-task model.  Entities are
  ``{"start", "end", "label", "text"}`` with offsets into the text.  A text longer than ``max_chars`` or a list
  longer than ``max_texts`` is answered 413, and so is a body of more bytes than any such request can take as
  JSON (:func:`body_limit`), before it is read whole; a body not sent as ``Content-Type: application/json``
  415; a malformed request 422 (FastAPI's validation); an unknown head 422.  When more than ``max_waiting``
  characters already wait to be tagged, a request is answered 503 with ``Retry-After`` (load shedding: a server
  that falls behind refuses new work at once instead of queueing it without bound, its answers arriving later
  and later, after clients gave up; a request alone in the queue is always taken).  A client that disconnects
  while its texts wait has them taken out of the queue: they are not tagged, and no longer count as waiting.
* ``GET /health`` → ``{"status": "ok"}`` (503 and ``"error"`` if the tagging worker ended with an error; the next
  request starts it again); ``GET /model`` → what the model is (:meth:`lexner.models.base.Tagger.describe`).

Requests in flight share one model through micro-batching: texts that arrive within ``batch_wait_ms`` of each
other (up to ``max_batch`` texts) are tagged by one ``tag_batch`` call in a single worker thread, so the model is
never used by two threads at once and results are exactly ``tag_batch``'s.  That thread is the batcher's own, the
same one for every batch until the app stops (which ends it): not the event loop's default executor, which other
code in the process shares (``asyncio.to_thread``, DNS lookups: a blocking call there held every request up) and
which runs each call in whichever of its threads is free — every thread that tags grows its own glibc malloc
arena, holding freed memory that the others do not reuse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, model_validator

log = logging.getLogger(__name__)


class TagRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key ("label") is refused, not silently ignored

    text: str | None = None
    texts: list[str] | None = None
    labels: str | None = None

    @model_validator(mode="after")
    def one_of_text_or_texts(self) -> "TagRequest":
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        return self


@dataclass
class _Pending:
    texts: list[str]
    labels: str | None
    future: asyncio.Future = field(repr=False)
    chars: int = 0
    counted: bool = True  # its characters are in MicroBatcher.waiting


class Busy(Exception):
    """More characters wait to be tagged than the server takes (answered 503)."""


class MicroBatcher:
    """Collects texts from concurrent requests and tags them together (see the module docstring)."""

    def __init__(self, tagger, max_batch: int = 64, batch_wait_ms: float = 2.0, max_waiting: int = 1_000_000):
        self.tagger, self.max_batch, self.wait = tagger, max_batch, batch_wait_ms / 1000
        self.max_waiting = max_waiting
        self.waiting = 0  # characters queued and not yet taken by the worker
        self.queue: asyncio.Queue[_Pending] | None = None
        self.worker: asyncio.Task | None = None
        # the thread every tag_batch runs in, from start() to stop(), which ends it (FastAPI keeps an app's
        # endpoints, and so this batcher, long after the app is gone); a thread started again begins only once the
        # previous one has finished the batch it ran, so the model is never used by two threads at once
        self.thread: ThreadPoolExecutor | None = None
        self.ended: ThreadPoolExecutor | None = None  # the thread stop() ended, maybe still tagging

    async def start(self) -> None:
        """Start the worker (again, if it ended), on the queue texts may already wait in.  The app's lifespan
        starts it; so does the first request, where the lifespan does not run (an app mounted in another)."""
        if self.worker is not None and self.worker.get_loop() is not asyncio.get_running_loop():
            self.queue = self.worker = None  # the app started again in another event loop: a queue is bound to one
        if self.queue is None:
            self.queue, self.waiting = asyncio.Queue(), 0
        if self.thread is None:
            ended, self.ended = self.ended, None
            self.thread = ThreadPoolExecutor(1, "lexner-tagging", initializer=ended and ended.shutdown)
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        if self.thread is not None:
            self.thread.shutdown(wait=False)  # ends once the batch it may be running is done
            self.ended, self.thread = self.thread, None
        self.queue = self.worker = None

    def failure(self) -> str | None:
        """Why the worker ended, if it ended with an error (the next request starts it again)."""
        if self.worker is None or not self.worker.done() or self.worker.cancelled():
            return None
        err = self.worker.exception()
        return None if err is None else f"{type(err).__name__}: {err}"

    async def tag(self, texts: list[str], labels: str | None) -> list[list[Any]]:
        """The entities of ``texts``; :class:`Busy` if more than ``max_waiting`` characters would wait with them
        (unless none waits: a request alone is always taken, however long)."""
        await self.start()
        chars = sum(len(t) for t in texts)
        if chars and self.waiting and self.waiting + chars > self.max_waiting:
            raise Busy(f"the server is busy: {self.waiting} characters wait to be tagged (at most "
                       f"{self.max_waiting}); try again shortly")
        pending = _Pending(texts, labels, asyncio.get_running_loop().create_future(), chars)
        pending.future.add_done_callback(lambda f: self._uncount(pending) if f.cancelled() else None)
        self.waiting += chars
        self.queue.put_nowait(pending)
        return await pending.future  # cancelling the caller cancels the future: the worker skips it

    def _uncount(self, pending: _Pending) -> None:
        """``pending``'s characters no longer wait: the worker took it, or its request was cancelled."""
        if pending.counted:
            pending.counted = False
            self.waiting -= pending.chars

    async def _take(self) -> _Pending:
        taken = await self.queue.get()
        self._uncount(taken)
        return taken

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            pending = [await self._take()]
            deadline = time.monotonic() + self.wait
            while sum(len(p.texts) for p in pending) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    pending.append(await asyncio.wait_for(self._take(), remaining))
                except asyncio.TimeoutError:
                    break
            pending = [p for p in pending if not p.future.done()]  # a request cancelled while it waited: no work
            for labels in dict.fromkeys(p.labels for p in pending):  # one tag_batch per head
                group = [p for p in pending if p.labels == labels]
                texts = [t for p in group for t in p.texts]
                try:
                    tagged = await loop.run_in_executor(self.thread, self.tagger.tag_batch, texts, self.max_batch,
                                                        labels)
                except Exception as err:  # e.g. an unknown head: that group's requests get the error
                    for p in group:
                        if not p.future.done():
                            p.future.set_exception(err)
                    continue
                position = 0
                for p in group:
                    if not p.future.done():
                        p.future.set_result(tagged[position : position + len(p.texts)])
                    position += len(p.texts)


def _refusal(tagger, labels: str | None) -> str | None:
    """Why ``tagger`` refuses to tag with head ``labels`` now (an unknown head, dictionary types it lacks), or
    None: a request's own fault (answered 422), told from a failure of the model (500)."""
    try:
        tagger.check_head(labels)
    except (ValueError, TypeError) as err:
        return str(err)
    return None


async def _disconnected(request: Request) -> None:
    """Returns when the client of ``request`` (whose body was read) disconnects — or when its answer has been
    sent, so the caller stops waiting for this once the answer is ready."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)  # (a server may answer at once with an empty body: no busy loop)


def body_limit(max_chars: int, max_texts: int) -> int:
    """The most bytes a request within the limits can take: ``max_texts`` texts of ``max_chars`` characters,
    each written as JSON's longest escape (12 bytes: a surrogate pair of ``\\uXXXX``), plus room for keys,
    quotes and whitespace."""
    return max_texts * (12 * max_chars + 64) + 65_536


class _BodyChecks:
    """ASGI middleware for POST bodies: one not declared as JSON is answered 415 (``curl -d`` sends a form type,
    which FastAPI would refuse with a puzzling 422); one over ``limit`` bytes 413 — by its Content-Length
    before anything is read, or, sent in chunks, as soon as what arrived passes the limit (FastAPI passes the
    HTTPException raised while it reads the body on as the response)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if not (kind == b"application/json" or kind.startswith(b"application/") and kind.endswith(b"+json")):
            said = kind.decode("latin-1") or "none"
            refusal = f"the body must be JSON, sent with Content-Type: application/json (got {said})"
            return await JSONResponse({"detail": refusal}, 415)(scope, receive, send)
        refusal = f"a request body of more than {self.limit} bytes"
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await JSONResponse({"detail": refusal}, 413)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, refusal)
            return message

        await self.app(scope, limited, send)


class _JSON(JSONResponse):
    """JSON with non-ASCII characters as they are, except a text with a lone surrogate (sent as a ``\\ud800``
    escape; UTF-8 cannot hold it): then every character is escaped, so that the text comes back as it was sent."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float as a string (``NaN``, ``Infinity``): Python's JSON parser reads
    those words in a request, but a JSON answer cannot hold them, and a refusal echoes the input."""
    if isinstance(value, float) and not math.isfinite(value):
        return json.dumps(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def create_app(tagger, max_chars: int = 10_000, max_texts: int = 256, max_batch: int = 64,
               batch_wait_ms: float = 2.0, max_waiting: int = 1_000_000) -> FastAPI:
    """The FastAPI application serving ``tagger``."""
    batcher = MicroBatcher(tagger, max_batch, batch_wait_ms, max_waiting)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="lexner", description="Chinese named-entity recognition", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError) -> JSONResponse:  # FastAPI's answer, through _JSON:
        try:  # it echoes the input, surrogates too
            detail = _finite(jsonable_encoder(exc.errors()))
        except RecursionError:  # lists nested hundreds deep: refused without the echo
            detail = "a malformed request, nested too deep to show"
        return _JSON({"detail": detail}, 422)
    app.add_middleware(_BodyChecks, limit=body_limit(max_chars, max_texts))

    @app.get("/health")
    async def health() -> JSONResponse:
        if failure := batcher.failure():
            return _JSON({"status": "error", "detail": f"the tagging worker ended: {failure}"}, 503)
        return _JSON({"status": "ok"})

    @app.get("/model")
    async def model() -> dict:
        return tagger.describe()

    @app.post("/tag")
    async def tag(request: TagRequest, http: Request) -> JSONResponse:
        texts = [request.text] if request.text is not None else request.texts
        if len(texts) > max_texts:
            raise HTTPException(413, f"{len(texts)} texts in one request; at most {max_texts}")
        longest = max((len(t) for t in texts), default=0)
        if longest > max_chars:
            raise HTTPException(413, f"a text of {longest} characters; at most {max_chars}")
        try:
            tagger.check_head(request.labels)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        tagging = asyncio.ensure_future(batcher.tag(texts, request.labels))
        gone = asyncio.ensure_future(_disconnected(http))
        try:
            await asyncio.wait({tagging, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            left = not tagging.done()
            if left:  # the client went away (or the server stops): its texts leave the queue untagged
                tagging.cancel()
        if left:
            return _JSON({"detail": "the client closed the request"}, 499)
        try:
            tagged = tagging.result()
        except Busy as busy:
            return _JSON({"detail": str(busy)}, 503, headers={"Retry-After": "1"})
        except Exception as err:
            if (refused := _refusal(tagger, request.labels)) is not None:  # a dictionary added since it came
                return _JSON({"detail": refused}, 422)
            log.error("tagging failed", exc_info=err)  # a failure of the model: said as JSON too, and logged
            return _JSON({"detail": f"tagging failed: {type(err).__name__}: {err}"}, 500)
        results = [[e.to_dict() for e in entities] for entities in tagged]
        return _JSON({"entities": results[0]} if request.text is not None else {"results": results})

    return app
