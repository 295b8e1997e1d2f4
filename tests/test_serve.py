"""lexner serve: a real server process on a free localhost port, concurrent and malformed requests."""

import contextlib
import http.client
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

import lexner  # noqa: E402
from lexner.serve import body_limit  # noqa: E402

TEXTS = ["张三在北京大学读书。", "李四去了上海，见到了王小明。", "", "国际奥委会主席罗格出席开幕式\n2008年北京奥运会",
         "😀 @小明 在深圳"]


def request(port: int, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server():
    with serving("--max-chars", "200", "--max-texts", "8", "--max-waiting", "100000") as port:
        yield port


@contextlib.contextmanager
def serving(*options: str, threads: int = 1):
    """A ``lexner serve --port 0`` process with ``options`` (also used by benchmarks/serve_speed.py): gives
    the port it says it chose once /health answers there, ends it after."""
    with served(*options, threads=threads) as (_, port):
        yield port


@contextlib.contextmanager
def served(*options: str, threads: int = 1, env: dict[str, str] | None = None):
    """:func:`serving`, giving the process too (benchmarks/serve_memory.py reads its memory), with the
    environment ``env`` (None: this process's)."""
    process = subprocess.Popen([sys.executable, "-m", "lexner", "serve", "--port", "0", "--threads", str(threads),
                                *options], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        said = b""
        while not (chosen := re.search(rb"running on http://127\.0\.0\.1:(\d+)", said)):
            line = process.stdout.readline()  # the server's few start-up lines
            if not line:
                raise RuntimeError(f"server did not start: {said.decode()[-2000:]}")
            said += line
        port = int(chosen.group(1))
        deadline = time.time() + 120
        while True:
            try:
                if request(port, "/health") == (200, {"status": "ok"}):
                    break
            except OSError:
                pass
            if process.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start: {process.stdout.read().decode()[-2000:]}")
            time.sleep(0.2)
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def expected(texts):
    return [[e.to_dict() for e in entities] for entities in lexner.load().tag_batch(texts)]


def test_one_text_and_a_list_give_tag_batch_results(server):
    assert request(server, "/tag", {"text": TEXTS[0]}) == (200, {"entities": expected(TEXTS[:1])[0]})
    assert request(server, "/tag", {"texts": TEXTS}) == (200, {"results": expected(TEXTS)})


def test_concurrent_requests_are_micro_batched_with_identical_results(server):
    jobs = [TEXTS[i % len(TEXTS)] * (1 + i % 3) for i in range(48)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: request(server, "/tag", {"text": t}), jobs))
    assert answers == [(200, {"entities": e}) for e in expected(jobs)]


@pytest.mark.parametrize("body, raw, status", [
    ({"text": "天" * 201}, None, 413),
    ({"texts": ["张三"] * 9}, None, 413),
    ({"text": "张三", "texts": ["李四"]}, None, 422),
    ({}, None, 422),
    ({"text": 3}, None, 422),
    ({"texts": "张三"}, None, 422),
    ({"text": "张三", "labels": "no-such-head"}, None, 422),
    ({"text": "张三", "label": "cluener"}, None, 422),  # a misspelt key
    (None, b"{not json", 422),
    (None, b'{"text": NaN}', 422),  # JSON words Python reads, echoed back as strings (was a 500)
    (None, b'{"texts": ["a", -Infinity]}', 422),
    (None, b'{"text": "\xff"}', 400),  # not UTF-8
])
def test_malformed_or_oversized_requests_are_refused_and_the_server_stays_up(server, body, raw, status):
    code, answer = request(server, "/tag", body, raw)
    assert code == status and "detail" in answer
    assert request(server, "/health") == (200, {"status": "ok"})


def test_a_lone_surrogate_in_a_text_comes_back_escaped_not_as_a_500(server):
    text = "张\ud800三在北京"  # sent as the JSON escape \ud800; UTF-8 cannot hold it
    code, answer = request(server, "/tag", None, json.dumps({"text": text}).encode("ascii"))
    assert code == 200 and answer == {"entities": expected([text])[0]}
    assert any("\ud800" in e["text"] for e in answer["entities"])  # the case that failed: inside an entity
    for body in ({"text": "\ud800", "texts": ["a"]}, {"text": ["\ud800"]}):  # refusals echo the input
        code, answer = request(server, "/tag", None, json.dumps(body).encode("ascii"))
        assert code == 422 and "detail" in answer
    assert request(server, "/health") == (200, {"status": "ok"})


@pytest.mark.parametrize("kind", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_a_body_not_sent_as_json_is_a_415_that_says_so(server, kind):
    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    try:
        connection.request("POST", "/tag", body=json.dumps({"text": "张三"}).encode(),
                           headers={"Content-Type": kind} if kind else {})
        answer = connection.getresponse()
        assert answer.status == 415
        assert f"Content-Type: application/json (got {kind or 'none'})" in json.loads(answer.read())["detail"]
    finally:
        connection.close()
    code, answer = request(server, "/tag", raw=json.dumps({"text": "张三"}).encode())  # application/json
    assert code == 200


def test_a_body_over_the_byte_limit_is_refused_by_its_length_or_once_it_passes_it(server):
    padded = b'{"text": "' + b" " * body_limit(200, 8) + b'"}'  # (a long text, too, but refused as a body)
    code, answer = request(server, "/tag", raw=padded)
    assert code == 413 and "a request body of more than" in answer["detail"]
    sent = []

    def chunks():  # no Content-Length: the server learns the size only by reading
        yield b'{"text": "'
        for _ in range(1000):
            sent.append(len(b" " * 1000))
            yield b" " * 1000
        yield b'"}'

    connection = http.client.HTTPConnection("127.0.0.1", server, timeout=60)
    try:
        connection.request("POST", "/tag", body=chunks(), headers={"Content-Type": "application/json"},
                           encode_chunked=True)
        answer = connection.getresponse()
        assert answer.status == 413 and "a request body of more than" in json.loads(answer.read())["detail"]
    except (BrokenPipeError, ConnectionResetError):  # the server answered and closed while we still sent
        pass
    finally:
        connection.close()
    assert sum(sent) > body_limit(200, 8)
    assert request(server, "/health") == (200, {"status": "ok"})


def test_model_card(server):
    code, card = request(server, "/model")
    ner = lexner.load()
    assert code == 200 and card["model"] == ner.name and card["entity_types"] == ner.featurizer.entity_types
    assert card["label_sets"] == {n: ls.entity_types for n, ls in ner.featurizer.label_sets.items()}
    assert card["card"] == ner.metadata["card"]
    assert card == json.loads(json.dumps(ner.describe(), ensure_ascii=False))  # one description for lexner info too
    assert card["parameters"] == sum(p.numel() for p in ner.parameters()) and card["runtime"] == "torch"


def test_dictionary_types_a_requested_head_lacks_are_a_422_not_a_500(tmp_path):
    (tmp_path / "d.tsv").write_text("腾讯\tcompany\n", encoding="utf-8")  # a type of the cluener head only
    with serving("--dictionary", str(tmp_path / "d.tsv")) as port:
        status, body = request(port, "/tag", {"text": "腾讯在深圳"})
        assert status == 422 and "not types of the default head" in body["detail"]
        status, body = request(port, "/tag", {"text": "腾讯在深圳", "labels": "cluener"})
        assert status == 200 and {"start": 0, "end": 2, "label": "company", "text": "腾讯"} in body["entities"]
        assert request(port, "/model")[1]["dictionary_words"] == 1  # it said nothing of a dictionary


def test_serve_refuses_a_port_in_use_or_a_host_that_does_not_resolve_as_other_errors(capsys):
    import socket

    from lexner.cli import main

    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--host", "127.0.0.1", "--port", str(port)]) == 2
    assert f"lexner: error: --port {port}: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", "--host", "999.1.1.1", "--port", "0"]) == 2
    assert "lexner: error: --host 999.1.1.1: cannot be resolved" in capsys.readouterr().err


def test_serve_listen_check_takes_every_interface_and_names_the_host_that_is_not_this_machine_s():
    from lexner.cli import CommandError, _check_listen

    _check_listen("", 0)  # uvicorn's "every interface"
    _check_listen("::1" if socket_has_ipv6() else "127.0.0.1", 0)
    with pytest.raises(CommandError, match="--host 192.0.2.1: cannot listen on 192.0.2.1:0"):
        _check_listen("192.0.2.1", 0)  # TEST-NET-1: no machine's own address


def socket_has_ipv6() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_an_app_mounted_in_another_tags_without_its_lifespan_and_deep_nesting_is_a_422():
    """Starlette runs no lifespan of a mounted app: the first request starts the batcher (was a 500 on every
    /tag while /health said ok); lists nested hundreds deep are refused as malformed (was a RecursionError, 500)."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from lexner.serve import create_app

    tagger = lexner.load()
    outer = FastAPI()
    outer.mount("/ner", create_app(tagger))
    with TestClient(outer) as client:
        answer = client.post("/ner/tag", json={"text": TEXTS[0]})
        assert answer.status_code == 200 and answer.json() == {"entities": expected(TEXTS[:1])[0]}
        deep = b'{"texts": ' + b"[" * 500 + b"]" * 500 + b"}"
        answer = client.post("/ner/tag", content=deep, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422 and "detail" in answer.json()
        assert client.get("/ner/health").json() == {"status": "ok"}
    for _ in range(2):  # the app started again, in another event loop each time (a queue is bound to one loop)
        with TestClient(outer) as client:
            assert answered(client, "/ner/tag", {"text": TEXTS[0]}) == 200
    app = create_app(tagger)
    for _ in range(2):  # with its lifespan run each time
        with TestClient(app) as client:
            assert answered(client, "/tag", {"text": TEXTS[0]}) == 200


def answered(client, path: str, body: dict, seconds: float = 30) -> int:
    """The status of a POST, or a failure if none comes within ``seconds`` (a request that hangs)."""
    import threading

    status = []
    thread = threading.Thread(target=lambda: status.append(client.post(path, json=body).status_code), daemon=True)
    thread.start()
    thread.join(seconds)
    assert status, f"no answer to POST {path} within {seconds} s"
    return status[0]


def test_a_worker_that_ended_with_an_error_is_reported_by_health_and_started_again_by_a_request():
    import asyncio

    from lexner.serve import MicroBatcher

    async def scenario():
        batcher = MicroBatcher(lexner.load())
        await batcher.start()
        batcher.worker.cancel()
        await asyncio.sleep(0)
        assert batcher.failure() is None  # cancelled (the app stopping) is no failure

        async def crash():
            raise RuntimeError("boom")

        batcher.worker = asyncio.create_task(crash())
        await asyncio.sleep(0)
        assert batcher.failure() == "RuntimeError: boom"
        tagged = await batcher.tag([TEXTS[0]], None)
        assert batcher.failure() is None
        return tagged

    assert [[e.to_dict() for e in entities] for entities in asyncio.run(scenario())] == expected(TEXTS[:1])


class Slow:
    """The bundled model, held up in tag_batch until ``release`` is set; records the texts it was given."""

    def __init__(self):
        import threading

        self.model, self.entered, self.release, self.tagged = lexner.load(), threading.Event(), threading.Event(), []

    def __getattr__(self, name):
        return getattr(self.model, name)

    def tag_batch(self, texts, *args):
        self.tagged.append(list(texts))
        self.entered.set()
        self.release.wait(30)
        return self.model.tag_batch(texts, *args)


async def until(condition):
    import asyncio

    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_a_server_that_falls_behind_answers_503_with_retry_after_and_tags_what_it_took():
    """Load shedding: with more than ``max_waiting`` characters queued behind a busy worker, a request is a 503
    (was queued without bound); a request alone in the queue is taken however long; what was taken is answered."""
    import asyncio

    import httpx

    from lexner.serve import create_app

    slow = Slow()

    async def scenario():
        app = create_app(slow, max_waiting=12, batch_wait_ms=0)
        batcher = app.state.batcher
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lexner") as client:
            first = asyncio.create_task(client.post("/tag", json={"text": TEXTS[0]}))
            await until(slow.entered.is_set)  # the worker took it and waits
            second = asyncio.create_task(client.post("/tag", json={"text": TEXTS[1]}))  # 14 characters, alone
            await until(lambda: batcher.waiting == 14)  # taken although over 12
            refused = await client.post("/tag", json={"text": "张三"})
            slow.release.set()
            return refused, await first, await second

    refused, first, second = asyncio.run(scenario())
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "14 characters wait to be tagged (at most 12)" in refused.json()["detail"]
    assert first.json() == {"entities": expected(TEXTS[:1])[0]}
    assert second.json() == {"entities": expected(TEXTS[1:2])[0]}


def test_a_client_that_disconnects_while_waiting_has_its_texts_taken_out_of_the_queue():
    """Its texts are not tagged and no longer count as waiting (uvicorn does not cancel a request whose client
    left: the app watches for the disconnect itself)."""
    import asyncio

    from lexner.serve import create_app

    slow = Slow()

    async def call(app, text, leave: asyncio.Event):
        """One POST /tag through the ASGI interface; its client disconnects once ``leave`` is set."""
        body = json.dumps({"text": text}).encode()
        sent, answer = [False], {}

        async def receive():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            await leave.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            answer.setdefault("status", message.get("status"))

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/tag", "raw_path": b"/tag", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        await app(scope, receive, send)
        return answer["status"]

    async def scenario():
        app = create_app(slow, batch_wait_ms=0)
        batcher, stays, leaves = app.state.batcher, asyncio.Event(), asyncio.Event()
        first = asyncio.create_task(call(app, TEXTS[0], stays))
        await until(slow.entered.is_set)  # the worker holds the first request
        second = asyncio.create_task(call(app, TEXTS[1], leaves))
        await until(lambda: batcher.waiting == len(TEXTS[1]))
        leaves.set()  # its client goes away while it waits
        assert await second == 499
        assert batcher.waiting == 0
        slow.release.set()
        assert await first == 200
        third = await call(app, TEXTS[4], stays)  # the worker goes on with what comes next
        return third

    assert asyncio.run(scenario()) == 200
    assert slow.tagged == [[TEXTS[0]], [TEXTS[4]]]  # the second text never reached the model


def test_a_head_refused_when_its_turn_comes_is_a_422_and_a_model_failure_a_json_500():
    """A dictionary added while a request waited (its head checked on arrival) made tag_batch raise: a plain-text
    500 "Internal Server Error"; so was any failure of the model."""
    from fastapi.testclient import TestClient

    from lexner.serve import create_app

    class Failing:
        def __init__(self, error):
            self.model, self.error = lexner.load(), error

        def __getattr__(self, name):
            return getattr(self.model, name)

        def tag_batch(self, *args):
            if self.error is None:  # a dictionary of a type the default head lacks, added while the request waited
                self.model.add_dictionary({"腾讯": "company"})
                return self.model.tag_batch(*args)
            raise self.error

    refused = "the dictionary's types ['company'] are not types of the default head"
    for error, status, detail in (
            (None, 422, refused), (RuntimeError("out of memory"), 500, "tagging failed: RuntimeError: out of memory"),
            (ValueError("operands could not be broadcast"), 500,  # the model's own ValueError: no 422 (review)
             "tagging failed: ValueError: operands could not be broadcast")):
        with TestClient(create_app(Failing(error))) as client:
            answer = client.post("/tag", json={"text": TEXTS[0]})
            assert answer.status_code == status and answer.json()["detail"].startswith(detail), answer.json()
            assert client.post("/tag", json={"texts": TEXTS[:2]}).status_code == status  # and it keeps serving


def test_every_batch_is_tagged_in_one_thread_of_its_own_not_in_the_loop_default_executor():
    """Tagging ran in the loop's default executor, which other code shares (asyncio.to_thread, DNS lookups): a
    blocking call there held every request up; and each of its threads that tagged grew its own malloc arena."""
    import asyncio
    import threading

    from lexner.serve import MicroBatcher

    class Recording:
        def __init__(self):
            self.threads = set()

        def tag_batch(self, texts, *args):
            self.threads.add(threading.get_ident())
            return [[] for _ in texts]

    async def scenario():
        loop, gate = asyncio.get_running_loop(), threading.Event()
        loop.set_default_executor(ThreadPoolExecutor(1))
        held = loop.run_in_executor(None, gate.wait, 30)  # other code's blocking call holds the default executor
        batcher = MicroBatcher(Recording(), batch_wait_ms=0)
        try:
            for _ in range(20):
                assert await asyncio.wait_for(asyncio.gather(*(batcher.tag(["张三"], None) for _ in range(3))), 5) \
                    == [[[]]] * 3
        finally:
            gate.set()
            await held
            await batcher.stop()
        return batcher.tagger.threads

    threads = asyncio.run(scenario())
    assert len(threads) == 1 and threading.get_ident() not in threads


class Gated:
    """A tagger whose tag_batch waits for ``release``; records the threads it ran in and how many ran at once."""

    def __init__(self):
        import threading

        self.entered, self.release, self.lock = threading.Event(), threading.Event(), threading.Lock()
        self.threads, self.running, self.most = [], 0, 0

    def check_head(self, labels):
        pass

    def tag_batch(self, texts, *args):
        import threading

        with self.lock:
            self.threads.append(threading.current_thread())
            self.running += 1
            self.most = max(self.most, self.running)
        self.entered.set()
        self.release.wait(30)
        with self.lock:
            self.running -= 1
        return [[] for _ in texts]


def test_the_tagging_thread_ends_with_the_app_and_one_started_again_waits_for_the_batch_it_ran():
    """FastAPI keeps an app's endpoints (and so its batcher) after the app is gone: a thread kept for the
    batcher's lifetime stayed, idle, for every app created and used in the process."""
    import asyncio

    from fastapi.testclient import TestClient

    from lexner.serve import MicroBatcher, create_app

    tagger = Gated()
    tagger.release.set()
    with TestClient(create_app(tagger)) as client:
        assert client.post("/tag", json={"text": TEXTS[0]}).json() == {"entities": []}
    tagger.threads[0].join(5)
    assert not tagger.threads[0].is_alive()

    async def restarted():  # the app stopped while a batch was being tagged, and started again
        tagger = Gated()
        batcher = MicroBatcher(tagger, batch_wait_ms=0)
        first = asyncio.ensure_future(batcher.tag(["张三"], None))
        await until(tagger.entered.is_set)
        await batcher.stop()
        first.cancel()
        second = asyncio.ensure_future(batcher.tag(["李四"], None))
        await asyncio.sleep(0.3)
        assert len(tagger.threads) == 1 and not second.done()  # waits for the first batch's end
        tagger.release.set()
        assert await asyncio.wait_for(second, 10) == [[]]
        await batcher.stop()
        return tagger

    tagger = asyncio.run(restarted())
    assert tagger.most == 1 and len(tagger.threads) == 2
    for thread in tagger.threads:
        thread.join(5)
        assert not thread.is_alive()
