"""The Python entry points: build a tagger for training, load a saved one."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .data import Sentence, check_sentences, data_root, entity_types
from .dictionary import Dictionary
from .fileio import ModelFormatError, expand_home
from .features import DEFAULT_LABELS, Featurizer
from .lexicon import Lexicon
from .models import Tagger, model_class
from .models.base import checked_config, word_list
from .vectors import read_word2vec
from .vocab import EXTRA_PRETRAINED_BIGRAMS

log = logging.getLogger(__name__)

# Files under <data root>/embeddings (see data/README.md).
EMBEDDING_FILES = {
    "chars": "embeddings/char.50d.vec",
    "bigrams": "embeddings/bigram.50d.vec.xz",
    "words": "embeddings/word.50d.vec.xz",  # also the default lexicon of the lattice taggers
}
# The model that ships inside the package (see benchmarks/README.md for how it was trained and measured).
DEFAULT_MODEL = Path(__file__).resolve().parent / "default_model"


def default_embeddings(root: str | os.PathLike | None = None) -> dict[str, Path | None]:
    """Paths of the pretrained vector files under the data root (``None`` where a file is missing)."""
    root = Path(root) if root is not None else data_root()
    return {name: (root / rel if (root / rel).is_file() else None) for name, rel in EMBEDDING_FILES.items()}


def build_tagger(
    model: str,
    train: Sequence[Sentence],
    config: Mapping[str, Any] | None = None,
    embeddings: Mapping[str, str | os.PathLike | None] | None = None,
    seed: int = 1,
    lexicon: Lexicon | str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    bigram_min_count: int = 1,
    label_sets: Mapping[str, Sequence[str]] | None = None,
    pretrained_bigrams: int | None = EXTRA_PRETRAINED_BIGRAMS,
    progress: bool = False,
) -> Tagger:
    """A new, untrained tagger whose vocabularies come from ``train`` and whose embedding tables are
    initialised from the word2vec files in ``embeddings`` (``{"chars": path, "bigrams": path, "words": path}``).

    The character vocabulary is train's characters plus every pretrained character; the bigram vocabulary is
    train's bigrams seen at least ``bigram_min_count`` times plus the ``pretrained_bigrams`` most frequent
    pretrained ones (None: all of them; a larger ``bigram_min_count`` or a smaller ``pretrained_bigrams`` makes
    a smaller model, with more of the bigrams of new text unknown).  Taggers that use a lexicon
    take ``lexicon`` (a :class:`Lexicon`, a path to a word list or word2vec file, or several paths: the union
    of their words), by default the vocabulary of ``embeddings["words"]``; its vectors, if any, initialise the
    word embeddings, otherwise its words are looked up in ``embeddings["words"]``.  Of a plain word list, only
    the words with a pretrained vector or seen in ``train`` are kept (the others would stay random).  ``label_sets``
    (``{name: entity types}``, the default first) makes a multi-task model with one head per label set
    (trained with ``Trainer.fit_tasks``); without it, one head with ``train``'s types.  ``progress``: progress bars
    while vector files are read (stderr).  ``seed`` decides every initial weight (the same seed, the same
    model, whatever torch's global generator holds; that generator is left as it was).
    """
    check_sentences(train, "train")
    cls = model_class(model)
    model_config = checked_config(cls, dict(config or {}))  # ValueError naming a bad or unknown setting
    embeddings = dict(embeddings or {})
    reads = cls.inputs(model_config)  # what the model reads decides what is built and read here
    # where each table's vectors come from, for errors
    given = lexicon if lexicon is not None else embeddings.get("words")  # the lexicon's file(s), or a Lexicon
    sources = {"chars": embeddings.get("chars"), "bigrams": embeddings.get("bigrams"),
               "words": "the lexicon" if isinstance(given, Lexicon) else
               ", ".join(map(str, given)) if isinstance(given, (list, tuple)) else given}
    if reads.words:
        if lexicon is None:
            lexicon = embeddings.get("words")
            if lexicon is None:
                raise ValueError(f"{model} needs a lexicon: pass lexicon=... or embeddings['words'] (lexner train: "
                                 "--lexicon FILE or --word-vectors FILE)")
        if not isinstance(lexicon, Lexicon):
            lexicon = Lexicon.from_paths(lexicon, progress=progress)
    else:
        lexicon = None
    if not reads.chars:  # e.g. bert_crf: no character or bigram vocabulary to build, no vectors to read
        embeddings = {k: v for k, v in embeddings.items() if k not in ("chars", "bigrams")}
        label_sets = label_sets or {DEFAULT_LABELS: entity_types(train)}
    vocab_sentences = train if reads.chars else []
    _, bigram_counts = Featurizer.count_tokens(vocab_sentences)
    pretrained = {}
    if embeddings.get("chars"):
        pretrained["chars"] = read_word2vec(embeddings["chars"], progress=progress)
    if embeddings.get("bigrams"):
        kept = {b for b, count in bigram_counts.items() if count >= bigram_min_count}
        pretrained["bigrams"] = read_word2vec(embeddings["bigrams"], keep=None if pretrained_bigrams is None else kept,
                                              first=pretrained_bigrams or 0, progress=progress)
    if lexicon is not None and lexicon.vectors is not None:
        pretrained["words"] = (lexicon.words, lexicon.vectors)
    elif lexicon is not None:  # a plain word list: look its words up
        if embeddings.get("words"):
            pretrained["words"] = read_word2vec(embeddings["words"], keep=set(lexicon.words), progress=progress)
        lexicon = _learnable_words(lexicon, pretrained.get("words", ([],))[0], [s.text for s in train])
    if lexicon is not None and not any(len(word) >= lexicon.min_length for word in lexicon.words):
        kept = "" if lexicon.vectors is not None else " with a vector or found in the training text"
        raise ValueError(f"{sources['words']}: the lexicon has no word to match (none of {lexicon.min_length} "
                         f"characters or more{kept}): {model} would learn nothing from it (a word list has one "
                         "word per line; is this one?)")
    for name, (_, vectors) in pretrained.items():
        setting = f"{name[:-1]}_dim"  # chars: char_dim, ...
        width = getattr(model_config, setting, None)
        if width and vectors.shape[1] != width:  # 0: no such table
            raise ValueError(f"{sources[name]}: its {name[:-1]} vectors have {vectors.shape[1]} dimensions, the "
                             f"model's {setting} is {width}: set {setting}={vectors.shape[1]} (lexner train --set "
                             f"{setting}={vectors.shape[1]}) or give vectors of {width} dimensions")
    pieces = None
    if reads.pieces:
        from .pieces import PieceEncoder

        pieces = PieceEncoder.load(model_config.bert_path)
    featurizer = Featurizer.build(
        vocab_sentences,
        extra_chars=pretrained.get("chars", ([],))[0],
        extra_bigrams=pretrained.get("bigrams", ([],))[0],
        lexicon=lexicon,
        pieces=pieces,
        bigram_min_count=bigram_min_count,
        label_sets=label_sets,
    )
    import torch

    with torch.random.fork_rng(devices=[]):  # the layers' initial weights from ``seed`` alone
        torch.manual_seed(seed)
        tagger = cls(model_config, featurizer)
    tagger.fit_corpus(s.text for s in train)
    if tagger.embed is not None:
        found = tagger.embed.init_from(pretrained, seed=seed)
        for name, (_, vocab) in tagger.embed.tables().items():
            log.info("%s: %d entries, %d with pretrained vectors", name, len(vocab), found[name])
    return tagger


def load_for_training(directory: str | os.PathLike, label_sets: Mapping[str | None, Iterable[str]],
                      device: str = "cpu") -> Tagger:
    """The trained model saved in ``directory``, to train further on corpora of ``label_sets`` (``{head name:
    entity types}``, None the default head): its vocabularies, lexicon, settings and weights stay; a head it
    has must already know the types it is given, and a name it lacks gets a new, untrained head with those types.
    A ValueError says which head lacks which types."""
    tagger = Tagger.load(directory, device)
    featurizer = tagger.featurizer
    for name, types in label_sets.items():
        types = sorted(set(types))
        head = featurizer.default_labels if name is None else name
        if head not in featurizer.label_sets:
            tagger.add_head(head, types)
            log.info("%s: a new head %r for types %s", directory, head, ", ".join(types))
            continue
        known = featurizer.label_sets[head].entity_types
        if missing := [t for t in types if t not in known]:
            raise ValueError(f"{directory}: its head {head!r} has the types {', '.join(known)}, not "
                             f"{', '.join(missing)}; train a corpus of other types under a new name (--task "
                             "NAME:TRAIN), which gets a head of its own, or give the model the corpus's names for "
                             "the same types first (lexner export --rename OLD=NEW)")
    tagger.source = None  # changed in memory from here on
    return tagger


def _learnable_words(lexicon: Lexicon, with_vectors: Sequence[str], texts: Sequence[str]) -> Lexicon:
    """The words of a plain word list that have a pretrained vector or occur in the training ``texts``: any
    other word would only ever be represented by its random initial vector, noise wherever it matched."""
    vectors = set(with_vectors)
    seen = {m.word_id for text in texts for m in lexicon.match(text)}
    kept = [w for i, w in enumerate(lexicon.words) if i in seen or w in vectors]
    if len(kept) < len(lexicon):
        log.info("lexicon: %d of %d words kept (%d with pretrained vectors, %d more seen in the training texts)",
                 len(kept), len(lexicon), sum(w in vectors for w in kept), sum(w not in vectors for w in kept))
        lexicon = Lexicon(kept, min_length=lexicon.min_length)
    return lexicon


def resolve_device(name: str) -> str:
    """``name`` checked: "auto" (CUDA when torch sees a device, else the CPU), "cpu", "cuda" or "cuda:N"; a
    ValueError says what is wrong (not a device; CUDA asked for where torch sees none)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name}: lexner runs on cpu or cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name} was asked for, but torch sees no CUDA device")
    return str(name)


def load(path: str | os.PathLike | Sequence[str | os.PathLike] | None = None, device: str = "cpu",
         extra_words: Iterable[str] = (),
         dictionary: Mapping[str, str] | Iterable[tuple[str, str]] | Dictionary | None = None,
         onnx: bool | str | None = None, runtime: str | None = None) -> Tagger:
    """Load a saved tagger: ``ner = lexner.load("runs/weibo/model"); ner.tag("...")``.  Without ``path``, the
    bundled default model (:data:`DEFAULT_MODEL`, trained on MSRA, Weibo and CLUENER; default head PER, LOC, ORG).

    ``device``: "cpu", "cuda", "cuda:N" or "auto" (CUDA when there is one).
    ``extra_words``: domain words added to a lattice tagger's lexicon (see :meth:`Tagger.add_words`).
    ``dictionary``: ``{word: type}`` forced into every decoded path (see :meth:`Tagger.add_dictionary`).
    ``runtime``: how a BiLSTM encoder runs in CPU inference (:mod:`lexner.onnx_encoder`): "torch",
    "torch-bf16" (a bfloat16 copy of the LSTM: faster on CPUs with bfloat16 arithmetic, outputs close), "onnx"
    (ONNX Runtime, same outputs as torch) or "onnx-int8" (int8 LSTM weights: faster, outputs close); None: what
    the model directory's config.json ``"runtime"`` says, torch if nothing (if that asks for ONNX Runtime and it
    is not installed, a warning and torch).  ``onnx``: the older spelling — True or "float32" (onnx), "int8"
    (onnx-int8), False (torch).
    A list of paths loads an ensemble that averages the models' tag marginals (:mod:`lexner.models.ensemble`).
    """
    extra_words = word_list(extra_words, "extra_words")  # read once (an open file), for every ensemble member
    if isinstance(path, (list, tuple)):  # an ensemble (lexner.models.ensemble)
        from .models.ensemble import Ensemble

        if len(path) < 2:  # refused before any model is read
            raise ValueError(f"a list of paths loads an ensemble, which needs at least two models (got {len(path)}: "
                             f"{[str(p) for p in path]}); pass one path as it is to load one model")
        tagger = Ensemble([load(p, device=device, onnx=onnx, runtime=runtime) for p in path])
        if extra_words:
            tagger.add_words(extra_words)
        if dictionary is not None:
            tagger.add_dictionary(dictionary)
        return tagger
    directory = DEFAULT_MODEL if path is None else path
    if not str(directory).strip():  # Path("") is the current folder: "missing config.json" would puzzle
        raise ValueError(f"an empty model path ({str(directory)!r}); None loads the bundled model")
    directory = expand_home(directory)  # "~/models/m", as bert_path and piece files are read
    tagger = Tagger.load(directory, device=resolve_device(device))
    if extra_words:
        added = tagger.add_words(extra_words)
        log.info("added %d new lexicon words (%d given)", added, len(extra_words))
    if dictionary is not None:
        tagger.add_dictionary(dictionary)
    from .onnx_encoder import bilstms, runtime_of, use_runtime

    saved = tagger.metadata.get("runtime")
    config_file = Path(directory) / "config.json"
    chosen = runtime_of(runtime, onnx, saved, config_file)
    if chosen != "torch":
        asked = runtime is not None or onnx is not None
        if not asked and not bilstms(tagger):
            raise ModelFormatError(f"{config_file}: runtime {saved!r} runs a BiLSTM encoder; {tagger.name} has none")
        try:
            use_runtime(tagger, chosen)
        except ImportError:
            if asked:
                raise
            log.warning("%s asks for ONNX Runtime (runtime %r), which is not installed; running in torch "
                        '(pip install "lexner[onnx]")', directory, saved)
    return tagger


KEEP = "as saved"  # reload_recipe(runtime=KEEP): the other process runs what the model directory says


def reload_recipe(tagger: Tagger, extra_words: Iterable[str] = (), runtime: str | None = None) -> tuple:
    """What loads ``tagger`` again in another process (:func:`reloaded`), as plain data — never its weights: the
    directory it was loaded from (None for the bundled model: each process, on any machine, loads its own copy;
    any other as an absolute path), the words ``add_words`` added and ``extra_words``, its dictionary, runtime
    (``runtime``: another one; :data:`KEEP`: what the directory says, as that process resolves it) and piece
    length.  Other changes made in memory (training) are not carried.  A tagger that was not loaded from a
    directory (built or trained in memory, an ensemble) is refused with a ValueError."""
    if getattr(tagger, "source", None) is None:
        raise ValueError("this model was not loaded from a directory (built, trained or changed in memory, or an "
                         "ensemble), so another process cannot load it; save it (tagger.save(DIR)) and "
                         "lexner.load(DIR) it")
    source = Path(tagger.source).resolve()
    directory = None if source == DEFAULT_MODEL else str(source)
    words = list(dict.fromkeys([*tagger.added_words, *extra_words]))
    dictionary = tagger.dictionary.items() if tagger.dictionary else None
    runtime = None if runtime == KEEP else runtime or getattr(tagger, "runtime", "torch")
    return directory, words, dictionary, runtime, tagger.max_length


def reloaded(recipe: tuple, device: str = "cpu") -> Tagger:
    """The tagger a :func:`reload_recipe` describes, loaded on ``device``."""
    directory, extra_words, dictionary, runtime, piece_length = recipe
    tagger = load(directory, device=device, extra_words=extra_words, dictionary=dictionary, runtime=runtime)
    tagger.set_piece_length(piece_length)  # its pieces too, even if set in memory
    return tagger
