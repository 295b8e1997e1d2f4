"""Tagging a file of any size line by line: ``lexner.tagfile.tag_file`` (what ``lexner tag --input`` runs).

Lines are read, tagged and written a bounded number at a time (memory does not grow with the file), in input
order, by this process or by a pool of worker processes (one core each).  Written into a path, the output goes
to a temporary file renamed into place at the end: an existing output survives a failed run, and what was
tagged before a failure is kept as ``PATH.partial``; a later run that succeeds leaves such a file as it is
(it may be the user's own) and warns that it is stale.  A line that is not valid UTF-8 is handled as
``errors`` says (see ``lexner.fileio.iter_lines``); every line before it is tagged and written first.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import weakref
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from .fileio import STDIN, atomic_file, bytes_read, file_size, iter_lines, leading_bom, partial_name, shown_name
from .output import HTML_HEAD, HTML_TAIL, render

log = logging.getLogger(__name__)

_WORKER_TAGGER = None


def _worker_start(parent: int, recipe: tuple) -> None:
    """A worker process's start: it leaves Ctrl-C (sent to the whole group) to the parent, ends with it, and
    loads the model (:func:`_worker_init`, :func:`lexner.api.reload_recipe`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent(parent)
    _worker_init(recipe)


def _worker_init(recipe: tuple) -> None:
    import torch

    from .api import reloaded

    global _WORKER_TAGGER
    torch.set_num_threads(1)  # one core per worker process
    logging.getLogger("lexner.dictionary").setLevel(logging.ERROR)  # its warnings were the parent's, once
    _WORKER_TAGGER = reloaded(recipe)  # the parent's model, words, dictionary, runtime and pieces


def _end_with_parent(parent: int) -> None:
    """On Linux, this worker gets SIGTERM when the process that started it ends (killed with ``kill -9``, its
    pool never told the workers to stop: each kept a model's memory, forever); elsewhere nothing.  For spawned
    workers, whose parent is ``parent``: a forkserver's are its children, and would all end here at once."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it ended before that was set
        os._exit(1)


class LineNumbers:
    """Line numbers noted for a message: how many, and the first twenty (memory does not grow with a file of
    millions of such lines)."""

    SHOWN = 20

    def __init__(self) -> None:
        self.count, self.first = 0, []

    def append(self, number: int) -> None:
        self.count += 1
        if len(self.first) < self.SHOWN:
            self.first.append(number)

    def __len__(self) -> int:
        return self.count

    def __str__(self) -> str:
        return ", ".join(map(str, self.first)) + (", ..." if self.count > len(self.first) else "")


def warn_no_conll_record(which: str, where: str) -> None:
    """The warning for texts (``which``, at ``where``) that get no CoNLL record: an empty or whitespace-only
    text would be a blank line, and blank lines only separate records."""
    log.warning("%s empty or whitespace only (%s) have no record in CoNLL output (its blank lines only separate "
                "records), so records after them do not line up with the texts; --format jsonl keeps one record "
                "per text", which, where)


def _worker_tag(lines: list[str], batch_size: int, fmt: str, labels: str | None) -> str:
    tagged = _WORKER_TAGGER.tag_batch(lines, batch_size, labels=labels)
    return "".join(render(t, es, fmt) for t, es in zip(lines, tagged))


CHUNK_CHARS = 65_536
"""A chunk of lines tagged together ends at this many characters too (or at its number of lines): a file of long
lines still moves its progress bar and keeps a bounded amount of text in memory."""


def _chunks(lines: Iterable[tuple[int, str]], size: int, chars: int = CHUNK_CHARS,
            idle: Callable[[], bool] = lambda: False) -> Iterator[list[str]]:
    """Lists of ``size`` texts, or fewer holding ``chars`` characters, or whatever has come when ``idle()`` says no
    further text is ready, from ``(number, text)`` pairs.  If reading fails, the texts read before the failure
    come out first (as a last, shorter chunk), then the error."""
    chunk: list[str] = []
    held = 0
    try:
        for _, line in lines:
            chunk.append(line)
            held += len(line)
            if len(chunk) >= size or held >= chars or idle():
                yield chunk
                chunk, held = [], 0
    except Exception:
        if chunk:
            yield chunk
        raise
    if chunk:
        yield chunk


class _Arriving:
    """The lines of a stream (standard input, a pipe), read by a thread as they arrive, so that the tagger can
    see when none is waiting (:meth:`idle`): ``lexner tag --input -`` then tags and writes each text as it
    comes, a filter another program can talk to line by line, instead of holding texts back until a chunk is
    full.  At most ``ahead`` lines are read ahead; an error reading rises where the line would have come."""

    _END = object()
    threads: "weakref.WeakSet" = weakref.WeakSet()  # every reader thread started (see :func:`reading`)

    def __init__(self, lines: Iterable[tuple[int, str]], ahead: int):
        import queue
        import threading

        self._queue: queue.Queue = queue.Queue(maxsize=ahead)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(iter(lines),), daemon=True,
                                        name="lexner-tag-input")
        self._thread.start()
        _Arriving.threads.add(self._thread)

    def _read(self, lines: Iterator[tuple[int, str]]) -> None:
        import queue

        while not self._stop.is_set():
            try:
                item = next(lines, self._END)
            except BaseException as err:  # reaches the tagger as it would have without the thread
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item is self._END or isinstance(item, BaseException):
                return

    def __iter__(self) -> Iterator[tuple[int, str]]:
        import queue

        try:
            while True:
                try:  # a wait with a timeout: Ctrl-C reaches it on Windows too
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                if item is self._END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()  # the tagger stopped (done, failed, interrupted): the thread reads no further

    def idle(self) -> bool:
        """Whether no line is waiting to be tagged."""
        return self._queue.empty()


def reading() -> bool:
    """Whether a thread still waits for a line of standard input or a pipe (:class:`_Arriving`): the tagging
    stopped early (Ctrl-C, a reader that went away).  Python's own exit would then wait for standard input's
    lock, which that thread holds, and abort: the process must end with ``os._exit`` (:func:`lexner.cli.entry`)."""
    return any(thread.is_alive() for thread in _Arriving.threads)


class _Framed:
    """A text stream that writes ``head(text)`` into ``out`` before its first text (not empty)."""

    def __init__(self, out: IO[str], head: Callable[[str], str]):
        self.out, self.head, self.started = out, head, False

    def write(self, text: str) -> int:
        if not self.started and text:
            self.out.write(self.head(text))
            self.started = True
        return self.out.write(text)

    def flush(self) -> None:
        self.out.flush()


@contextmanager
def page(out: IO[str], fmt: str):
    """The stream to write the records into: for ``html``, the texts' blocks inside one page (its head before
    the first block, its end also after a failure, so what was tagged can be looked at; a failure before the
    first block writes nothing, so that no empty page is kept as partial work); for ``conll`` and ``text``, a
    byte-order mark before a first character U+FEFF (:func:`lexner.fileio.leading_bom`); other formats need no frame."""
    if fmt in ("conll", "text"):
        yield _Framed(out, leading_bom)
        return
    if fmt != "html":
        yield out
        return
    framed = _Framed(out, lambda first: HTML_HEAD)
    try:
        yield framed
    except BaseException:
        if framed.started:
            out.write(HTML_TAIL)
        raise
    if not framed.started:  # no text at all: an empty page
        out.write(HTML_HEAD)
    out.write(HTML_TAIL)


def tag_file(tagger, source: str | os.PathLike, target: str | os.PathLike | IO[str] | None = None, *,
             fmt: str = "jsonl", batch_size: int = 64, workers: int = 1, errors: str = "strict",
             labels: str | None = None, progress: bool = True, extra_words: Iterable[str] = ()) -> None:
    """Tag every line of ``source`` (a UTF-8 file, or ``"-"`` for standard input; only LF ends a line) into
    ``target`` — a path, an open text stream, or None for standard output — one record per line in ``fmt``
    (see ``lexner.output.render``).

    ``workers`` > 1 (0: one per core) tags in that many processes, each loading the model again from the
    directory ``tagger`` was loaded from (with ``extra_words`` and the words ``add_words`` added, its dictionary,
    runtime and piece length: :func:`lexner.api.reload_recipe`), so ``tagger`` must have been loaded from disk;
    on CUDA one process feeds the GPU.  A target that is the source file is refused (``ValueError``) before
    anything is written."""
    workers = workers if workers > 0 else (os.cpu_count() or 1)
    if tagger.device.type == "cuda":
        workers = 1
    if workers > 1 and getattr(tagger, "source", None) is None:
        raise ValueError("tagging with several workers needs a model loaded from a directory (lexner.load(path))")
    if target is None or hasattr(target, "write"):
        out = sys.stdout if target is None else target
        with page(out, fmt) as records:
            _tag_lines(tagger, source, records, fmt, batch_size, workers, errors, labels,
                       progress and not (out is sys.stdout and sys.stdout.isatty()), list(extra_words))
        return
    target = Path(target)
    if _same_file(source, target):
        raise ValueError(f"--output {target} is the input file; writing it would destroy the input")
    partial = partial_name(target)
    existed, earlier = target.exists(), _identity(partial)
    try:
        with atomic_file(target, partial=partial) as out, page(out, fmt) as records:
            _tag_lines(tagger, source, records, fmt, batch_size, workers, errors, labels, progress, list(extra_words))
    except BaseException:
        kept = "was left as it was" if existed else "was not written"
        if _identity(partial) not in (None, earlier):  # this run's work was moved there
            log.error("%s %s; what was tagged before the failure is in %s%s", target, kept, partial,
                      " (it replaced the one there before)" if earlier else "")
        elif earlier:
            log.error("%s %s; nothing was tagged before the failure (%s, there before this run, was left as it "
                      "was)", target, kept, partial)
        raise
    if earlier:  # left by an earlier failed run (or the user's own): kept, but no longer the latest work
        log.warning("%s is complete; %s, there before this run, was left as it was (an earlier run's failure? "
                    "delete it if so)", target, partial)


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is now (device, inode, modification time), or None if there is none."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_mtime_ns


def _same_file(source, target: Path) -> bool:
    """Whether writing ``target`` would replace the input ``source`` (a path, or ``"-"``: standard input, which
    may be a file redirected in): by its name, a path through folders not made yet, or a hard link.  Only a
    regular file can be replaced: a device, a pipe or a terminal is written into (``/dev/null`` as both is fine)."""
    with suppress(OSError, ValueError, AttributeError):  # AttributeError: no standard input at all (None)
        if target.exists() and not stat.S_ISREG(target.stat().st_mode):
            return False
        if str(source) == STDIN:
            return target.exists() and os.path.samestat(os.fstat(sys.stdin.fileno()), target.stat())
    if str(source) == STDIN or not Path(source).exists():
        return False
    return (os.path.realpath(source) == os.path.realpath(target)
            or target.exists() and os.path.samefile(source, target))


def _tag_lines(tagger, source, out: IO[str], fmt: str, batch_size: int, workers: int, errors: str,
               labels: str | None, progress: bool, extra_words: list[str]) -> None:
    """Tag ``source`` line by line into the open text stream ``out``, in input order.  If the input cannot be
    read to its end, every line before the failure is tagged and written before the error rises."""
    from tqdm.auto import tqdm

    if str(source) != STDIN and not Path(source).exists():  # before a progress bar is drawn
        raise FileNotFoundError(f"{source}: no such file")
    size = file_size(source)
    if size:  # a file: the bar counts its bytes, so that it has a total and an ETA; lines done beside
        bar = tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress)
    else:  # standard input or a pipe: lines, with no end known
        bar = tqdm(unit="line", disable=not progress)
    handle: list[IO[str]] = []
    done = 0

    def advance(n: int, position: int) -> None:  # n more lines written; the input read up to ``position``
        nonlocal done
        done += n
        if size:
            bar.set_postfix_str(f"{done} lines", refresh=False)
        bar.update(position - bar.n if size else n)

    def read_so_far() -> int:
        return bytes_read(handle[0], size) if size and handle else 0

    skipped = LineNumbers()
    lines = iter_lines(source, errors=errors, newline="\n", skipped=skipped, on_open=handle.append)
    blank = LineNumbers()  # conll: the input lines that get no record

    def noted(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
        for number, line in lines:
            if fmt == "conll" and (not line or line.isspace()):
                blank.append(number)
            yield number, line

    chunk_size = batch_size * 16  # bounded memory: a few chunks in flight at most
    if size:
        stream, chunks = None, _chunks(noted(lines), chunk_size)
    else:  # standard input or a pipe: each text tagged and written as soon as it comes
        stream = _Arriving(noted(lines), chunk_size)
        chunks = _chunks(stream, chunk_size, idle=stream.idle)
    try:
        if workers == 1:
            for texts in chunks:
                position = read_so_far()
                tagged = tagger.tag_batch(texts, batch_size, labels=labels)
                out.write("".join(render(t, es, fmt) for t, es in zip(texts, tagged)))
                advance(len(texts), position)
                if stream is not None:
                    out.flush()
        else:
            from collections import deque
            from concurrent.futures import ProcessPoolExecutor
            from concurrent.futures.process import BrokenProcessPool

            import multiprocessing

            from .api import reload_recipe

            spawn = multiprocessing.get_context("spawn")  # fork after torch has started threads can hang
            with ProcessPoolExecutor(workers, mp_context=spawn, initializer=_worker_start,
                                     initargs=(os.getpid(), reload_recipe(tagger, extra_words))) as pool:
                pending: deque = deque()

                def write_oldest() -> None:
                    n, position, future = pending.popleft()
                    out.write(future.result())
                    advance(n, position)

                try:
                    for texts in chunks:
                        pending.append((len(texts), read_so_far(),
                                        pool.submit(_worker_tag, texts, batch_size, fmt, labels)))
                        while len(pending) > 2 * workers:  # write in input order as results come
                            write_oldest()
                        if stream is not None and stream.idle():  # nothing more to read now: write it all
                            while pending:
                                write_oldest()
                            out.flush()
                except (KeyboardInterrupt, BrokenProcessPool):  # stopped, or a worker died: no more waiting
                    pool.shutdown(wait=False, cancel_futures=True)
                    pending.clear()
                    raise
                finally:  # also when reading failed: what was read is written first
                    while pending:
                        write_oldest()
        if size:  # read to its end (the last chunk may have been full: the end was found after it)
            bar.update(size - bar.n)
    finally:
        bar.close()
        if skipped:
            log.warning("%s: skipped %d line(s) that are not valid UTF-8 (--errors skip): line %s",
                        shown_name(source), len(skipped), skipped)
        if blank:
            warn_no_conll_record(f"{shown_name(source)}: {len(blank)} line(s)", f"line {blank}")
