"""A spaCy pipeline component (``pip install "lexner[spacy]"``)::

    import spacy
    nlp = spacy.blank("zh")
    nlp.add_pipe("lexner")                                   # the bundled model
    nlp.add_pipe("lexner", config={"model": "runs/x/model", "labels": "cluener"})
    nlp.add_pipe("lexner", config={"runtime": "onnx-int8"})  # torch, torch-bf16, onnx or onnx-int8
    doc = nlp("张三在北京工作。")
    [(e.text, e.label_) for e in doc.ents]

The component tags each doc's text with lexner and sets ``doc.ents`` from lexner's character offsets
(``Doc.char_span``).  spaCy's default Chinese tokenizer splits text into characters, so every entity falls on
token boundaries; with a word segmenter (jieba, pkuseg) an entity may start or end inside a token: with
``alignment_mode`` "expand" (the default) it grows to the tokens it touches ("contract": shrinks to those inside
it), with "strict" it is left out — in every case the entity as lexner found it is kept in
``doc.user_data["lexner_unaligned"]`` as ``(start, end, label)`` (sorted) so nothing changes silently.  An
expanded entity that would overlap another is dropped and kept there the same way (``spacy.util.filter_spans``
keeps the longer).  The component's ``labels`` are its head's entity types once its model is loaded (the setting
``labels`` names the head, as ``tag(labels=...)`` does).  ``nlp.pipe`` tags docs in batches through ``tag_batch``.

``dictionary`` (a ``{word: type}`` mapping, or the path of a ``word<TAB>TYPE`` file as ``lexner tag
--dictionary`` reads) forces its words into every doc as those types (:meth:`lexner.Tagger.add_dictionary`).

``nlp.to_disk(path)`` stores the lexner model inside the pipeline folder (``path/lexner/model``, with the ONNX
graphs its directory carried, and the tagger's dictionary in ``path/lexner/dictionary.json``), so
``spacy.load(path)`` works on a machine without the original model directory or dictionary file.
``nlp.to_bytes()`` cannot hold a model directory: it refuses, naming ``to_disk`` (or leave the component out:
``exclude=["lexner"]``).  Pickled (``nlp.pipe(n_process=2)`` where processes are spawned: macOS, Windows), the
component carries no weights: each process loads the model again from its directory, with the runtime,
dictionary and piece length of the tagger (see :func:`lexner.api.reload_recipe`).  ``nlp.evaluate`` scores it
as spaCy scores entities (``ents_p``, ``ents_r``, ``ents_f``, ``ents_per_type``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Union

from spacy.language import Language
from spacy.scorer import get_ner_prf
from spacy.tokens import Doc
from spacy.util import filter_spans

MODEL_DIR = "model"
DICTIONARY_FILE = "dictionary.json"
UNALIGNED = "lexner_unaligned"


@Language.factory("lexner", default_config={"model": None, "labels": None, "alignment_mode": "expand",
                                             "batch_size": 64, "device": "cpu", "runtime": None, "dictionary": None},
                  default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None})
def make_lexner(nlp: Language, name: str, model: str | None, labels: str | None, alignment_mode: str,
                batch_size: int, device: str, runtime: str | None,
                dictionary: Union[Dict[str, str], str, None]) -> "LexnerComponent":
    return LexnerComponent(model, labels, alignment_mode, batch_size, device, runtime, dictionary)


class LexnerComponent:
    """Sets ``doc.ents`` from a lexner tagger (see the module docstring)."""

    def __init__(self, model: str | None = None, labels: str | None = None, alignment_mode: str = "expand",
                 batch_size: int = 64, device: str = "cpu", runtime: str | None = None,
                 dictionary: dict[str, str] | str | None = None):
        from lexner.runtimes import RUNTIMES

        if alignment_mode not in ("expand", "strict", "contract"):
            raise ValueError(f"alignment_mode must be 'expand', 'strict' or 'contract', got {alignment_mode!r}")
        if runtime is not None and runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)} or None, got {runtime!r}")
        # the head's name: spaCy reads a component's ``labels`` as its label list (nlp.meta, to_disk)
        self.model, self.head, self.alignment_mode = model, labels, alignment_mode
        self.batch_size, self.device, self.runtime, self.dictionary = batch_size, device, runtime, dictionary
        self._tagger = None  # loaded on first use, or from the pipeline folder by from_disk
        self._recipe: tuple | None = None  # a pickled component's: how to load its tagger again

    @property
    def tagger(self):
        if self._tagger is None:
            if self._recipe is not None:
                from lexner.api import reloaded

                self._tagger = reloaded(self._recipe, device=self.device)
            else:
                self._tagger = self._load(self.model, self._dictionary(None))
            self._tagger.check_head(self.head)  # an unknown head fails here, naming the heads
        return self._tagger

    def _dictionary(self, saved: Path | None):
        """The dictionary to load the model with: a pipeline folder's copy (``saved``, if there), the entries of
        the ``dictionary`` setting after it (a file read now) — but a setting naming a file that is not there
        leaves a saved copy as it is (the pipeline moved to another machine); None if neither gives any."""
        from lexner.dictionary import Dictionary
        from lexner.fileio import read_json

        found = Dictionary(read_json(saved)) if saved is not None and saved.exists() else None
        setting = self.dictionary
        if isinstance(setting, (str, Path)):
            if found is not None and not Path(setting).exists():
                return found
            setting = Dictionary.read(setting)
        elif setting is not None:
            setting = Dictionary(setting)
        if found is not None and setting is not None:
            found.update(setting)
        return found if found is not None else setting

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the model's weights: its directory and settings (see the module docstring)."""
        from lexner.api import reload_recipe

        state = dict(self.__dict__, _tagger=None)
        if self._tagger is not None:
            state["_recipe"] = reload_recipe(self._tagger)
        return state

    @property
    def labels(self) -> tuple[str, ...]:
        """The entity types the component sets (its head's), as spaCy expects of a component's ``labels``; empty
        until the model is loaded (first use, or ``from_disk``: spaCy reads this before it calls that, when the
        model given at first may be gone)."""
        if self._tagger is None:
            return ()
        return tuple(self.tagger.featurizer.label_set(self.head).entity_types)

    def __call__(self, doc: Doc) -> Doc:
        return next(iter(self.pipe([doc])))

    def pipe(self, docs: Iterable[Doc], batch_size: int | None = None) -> Iterator[Doc]:
        size = batch_size or self.batch_size
        chunk: list[Doc] = []
        for doc in docs:
            chunk.append(doc)
            if len(chunk) >= size:
                yield from self._tag(chunk)
                chunk = []
        if chunk:
            yield from self._tag(chunk)

    def _tag(self, docs: list[Doc]) -> list[Doc]:
        tagged = self.tagger.tag_batch([doc.text for doc in docs], self.batch_size, labels=self.head)
        for doc, entities in zip(docs, tagged):
            spans, unaligned = [], []
            for e in entities:
                span = doc.char_span(e.start, e.end, label=e.label, alignment_mode=self.alignment_mode)
                if span is None or (span.start_char, span.end_char) != (e.start, e.end):
                    unaligned.append((e.start, e.end, e.label))  # left out, or grown/shrunk to the tokens
                if span is not None:
                    spans.append((span, (e.start, e.end, e.label)))
            kept = filter_spans([span for span, _ in spans])
            unaligned += [found for span, found in spans if span not in kept and found not in unaligned]
            unaligned.sort()
            doc.ents = kept
            if unaligned:
                doc.user_data[UNALIGNED] = unaligned
            else:  # a doc tagged again: no list left from before
                doc.user_data.pop(UNALIGNED, None)
        return docs

    def score(self, examples: Iterable[Any], **kwargs: Any) -> dict[str, Any]:
        """Precision, recall and F1 of the docs' entities, as spaCy scores its own NER (``nlp.evaluate``)."""
        return get_ner_prf(examples)

    def to_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> None:
        from lexner.fileio import write_json

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        # a model there is replaced whole; its card and runtime travel with it, and so do the ONNX graphs its
        # directory carried (without them, a load with runtime onnx-int8 builds and quantizes one again)
        self.tagger.save(path / MODEL_DIR, more=self._carry_graphs)
        dictionary = self.tagger.dictionary
        if dictionary:
            write_json(path / DICTIONARY_FILE, dictionary.items())
        elif (path / DICTIONARY_FILE).exists():  # one saved there before: not this component's any more
            (path / DICTIONARY_FILE).unlink()

    def to_bytes(self, exclude: Iterable[str] = ()) -> bytes:
        raise NotImplementedError("the lexner component's model is a directory, which nlp.to_bytes() cannot hold: "
                                  "save the pipeline with nlp.to_disk(path), or leave the component out "
                                  '(nlp.to_bytes(exclude=["lexner"]))')

    def from_bytes(self, data: bytes, exclude: Iterable[str] = ()) -> "LexnerComponent":
        self.to_bytes()  # the same refusal
        return self

    def _carry_graphs(self, folder: Path) -> None:
        from lexner.fileio import write_bytes
        from lexner.onnx_encoder import carried_graph
        from lexner.runtimes import GRAPH_FILES

        for precision, name in GRAPH_FILES.items():
            if (graph := carried_graph(self.tagger, precision)) is not None:
                write_bytes(folder / name, graph)

    def _load(self, model: str | Path | None, dictionary=None):
        import lexner

        return lexner.load(model, device=self.device, runtime=self.runtime, dictionary=dictionary)

    def from_disk(self, path: str | Path, exclude: Iterable[str] = ()) -> "LexnerComponent":
        path = Path(path)
        self._tagger, self._recipe = self._load(path / MODEL_DIR, self._dictionary(path / DICTIONARY_FILE)), None
        self._tagger.check_head(self.head)
        return self
