"""BERT features through ``transformers`` with a tiny random BERT built here (nothing is downloaded)."""

from __future__ import annotations

import functools
import json
import tempfile
import unicodedata
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import lexner  # noqa: E402
from lexner.api import build_tagger  # noqa: E402
from lexner.pieces import PieceEncoder  # noqa: E402
from lexner.train import Trainer, TrainConfig  # noqa: E402
from conftest import toy_corpus  # noqa: E402
from tagger_contract import ODD_TEXTS, TaggerContract  # noqa: E402

LATIN = ["apple", "##s", "ceo", "a", "b", "c", "e", "x", "1", "2", "3", "##3", "20", "##08", "abc", "##12"]


@functools.lru_cache(maxsize=None)
def tiny_bert(max_positions: int = 32) -> Path:
    """A 1-layer, 16-wide BERT with a character vocabulary and its fast tokenizer, in a temporary directory."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory = Path(tempfile.mkdtemp(prefix="lexner-tiny-bert-"))
    chars = sorted({c for s in toy_corpus() for c in s.text} | set("天在年，。！"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + LATIN
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    wordpiece = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)  # BERT's normaliser
    PreTrainedTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                            model_max_length=max_positions).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=max_positions,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    BertModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


class TestBertCRF(TaggerContract):
    model_name = "bert_crf"
    learn_steps = 60

    @property
    def config(self):
        return {"bert_path": str(tiny_bert()), "dropout": 0.0}

    def test_traditional_text_is_tagged_as_its_simplified_form(self):
        """A pretrained encoder's word pieces read the text as given (its vocabulary has both scripts), so a
        Traditional text need not give its Simplified form's spans; what holds: its pieces are the given
        characters' (not their Simplified forms'), and offsets and entity texts are on the string as given."""
        tagger = self.cached()
        traditional = "張三在北京工作，臺灣"
        assert tagger.featurizer.pieces.encode(traditional) != tagger.featurizer.pieces.encode("张三在北京工作，台湾")
        for text in (traditional, traditional + "\n" + traditional):
            assert all(e.text == text[e.start:e.end] for e in tagger.tag(text))


def encoder() -> PieceEncoder:
    return PieceEncoder.load(tiny_bert())


@pytest.mark.parametrize("text", [
    "张三在北京", "Apples在北京", "CEO张三 在 北京", "2008年", "abc12张三", "\u0000张三\t", "\ud800北京",
    "😀在北京", "é在北京", "",
])
def test_every_character_maps_to_the_piece_that_covers_it(text):
    pieces = encoder()
    ids, char_piece = pieces.encode(text)
    assert len(char_piece) == len(text)
    tokens = pieces.tokenizer.convert_ids_to_tokens(ids)
    for c, k in enumerate(char_piece):
        if text[c].isspace() or text[c] in "\u0000\ud800":
            assert k == -1  # spaces, control characters (and U+FFFD) are dropped by the tokenizer
        else:
            assert 0 <= k < len(ids)
            token = tokens[k].removeprefix("##")
            plain = unicodedata.normalize("NFD", text[c].lower())[0]  # the normaliser strips accents
            assert plain in token or (token == "[UNK]" and text[c] == "😀")
    # pieces are in text order
    seen = [k for k in char_piece if k >= 0]
    assert seen == sorted(seen)


def test_latin_words_and_numbers_share_their_pieces():
    pieces = encoder()
    ids, char_piece = pieces.encode("Apples 2008")
    assert pieces.tokenizer.convert_ids_to_tokens(ids) == ["apple", "##s", "20", "##08"]
    assert char_piece == [0, 0, 0, 0, 0, 1, -1, 2, 2, 3, 3]
    ids, char_piece = pieces.encode("Apples2008张")  # no split of the whole word exists: one [UNK] for it
    assert pieces.tokenizer.convert_ids_to_tokens(ids) == ["[UNK]", "张"]
    assert char_piece == [0] * 10 + [1]
    ids, char_piece = pieces.encode("北京龘")  # 龘 is not in the vocabulary
    assert pieces.tokenizer.convert_ids_to_tokens(ids)[-1] == "[UNK]" and char_piece == [0, 1, 2]


def test_long_sequences_use_windows_and_match_running_alone():
    tagger = build_tagger("bert_crf", toy_corpus(), {"bert_path": str(tiny_bert())}).eval()
    long_text = "张三在北京工作，" * 12  # 96 pieces, the encoder takes 30 at a time
    texts = [long_text, "李四", long_text[:40]]
    with torch.no_grad():
        together = tagger.emissions(tagger.featurizer.encode(texts))
        for i, text in enumerate(texts):
            alone = tagger.emissions(tagger.featurizer.encode([text]))[0]
            assert torch.allclose(together[i, : len(text)], alone, atol=1e-5)
    # the windows really differ from one pass over a truncated context: the first and last pieces see
    # different contexts, but every piece got a state
    features = tagger.bert(tagger.featurizer.encode([long_text]))
    assert features.shape == (1, len(long_text), 32) and bool((features.abs().sum(-1) > 0).all())


def test_trained_saved_and_reloaded_without_the_checkpoint(tmp_path):
    import shutil

    source = tmp_path / "bert"
    shutil.copytree(tiny_bert(), source)
    corpus = toy_corpus()
    tagger = build_tagger("bert_crf", corpus, {"bert_path": str(source)})
    config = TrainConfig(epochs=2, batch_size=5, optimizer="adam", lr=1e-3, encoder_lr=1e-4, patience=0)
    trainer = Trainer(tagger, config, tmp_path / "run", progress=False)
    scales = sorted(g["lr_scale"] for g in trainer.optimizer.param_groups)
    assert scales == [0.1, 1.0]  # the encoder learns at encoder_lr
    trainer.fit(corpus, corpus[:5])
    shutil.rmtree(source)  # the saved model must not need the original checkpoint
    model = lexner.load(tmp_path / "run" / "model")
    assert model.config.bert_config["hidden_size"] == 32
    texts = [s.text for s in corpus] + ODD_TEXTS
    assert model.tag_batch(texts) == trainer.model.tag_batch(texts)


def test_flat_with_bert_features(tmp_path):
    from tagger_contract import TOY_WORDS

    from lexner.lexicon import Lexicon

    corpus = toy_corpus()
    tagger = build_tagger("flat", corpus, {"bert_path": str(tiny_bert()), "model_dim": 16, "heads": 2,
                                           "ffn_dim": 32}, lexicon=Lexicon(TOY_WORDS))
    assert tagger.encoder_parameters() and tagger.bert is not None
    batch = tagger.featurizer.encode([s.text for s in corpus], [s.spans for s in corpus])
    tagger.loss(batch).backward()
    assert all(p.grad is not None for p in tagger.encoder_parameters() if p.requires_grad)
    tagger.save(tmp_path / "m")
    loaded = lexner.load(tmp_path / "m")
    texts = [s.text for s in corpus]
    assert loaded.tag_batch(texts) == tagger.eval().tag_batch(texts)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing is downloaded|never downloaded"):
        build_tagger("bert_crf", toy_corpus(), {"bert_path": str(tmp_path / "nope")})


def test_bert_crf_builds_no_character_vocabulary_and_leaves_the_callers_config_alone():
    from lexner.models.bert import BertCRF, BertCRFConfig

    corpus = toy_corpus()
    tagger = build_tagger("bert_crf", corpus, {"bert_path": str(tiny_bert())})
    assert len(tagger.featurizer.chars) <= 4 and len(tagger.featurizer.bigrams) <= 4  # the special tokens only
    assert tagger.featurizer.entity_types == ["LOC", "PER"]
    config = BertCRFConfig(bert_path=str(tiny_bert()))
    built = BertCRF(config, tagger.featurizer)
    assert config.bert_config == {} and built.config.bert_config["hidden_size"] == 32


def test_unk_dropout_is_refused_for_a_model_reading_no_characters(tmp_path):
    from lexner.train import Trainer, TrainConfig, TrainingError

    tagger = build_tagger("bert_crf", toy_corpus(), {"bert_path": str(tiny_bert())})
    with pytest.raises(TrainingError, match="unk_dropout: bert_crf does not read characters"):
        Trainer(tagger, TrainConfig(unk_dropout=0.1), tmp_path, progress=False)
    Trainer(tagger, TrainConfig(), tmp_path, progress=False)  # without it: fine


def _copy(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_a_checkpoint_with_vocab_txt_alone_tokenizes_as_with_its_tokenizer_json(tmp_path):
    """transformers 5's BertTokenizerFast(vocab_file=...) ignored the file: every piece was [UNK], silently."""
    plain = _copy(tiny_bert(), tmp_path / "plain")
    (plain / "tokenizer.json").unlink()
    for text in ["张三在北京", "Apples在北京 CEO", "2008年abc12"]:
        assert PieceEncoder.load(plain).encode(text) == encoder().encode(text)
    assert PieceEncoder.load(plain).encode("张三")[0] != [encoder().tokenizer.unk_token_id] * 2


def test_a_tokenizer_with_ids_past_the_encoders_embeddings_is_refused(tmp_path):
    from lexner.fileio import ModelFormatError

    longer = _copy(tiny_bert(), tmp_path / "longer")
    (longer / "tokenizer.json").unlink()
    with open(longer / "vocab.txt", "a", encoding="utf-8") as vocab:
        vocab.write("龘\n")  # one piece the encoder has no embedding for: its id is exactly the encoder's size
    with pytest.raises(ModelFormatError, match="past the encoder's"):
        build_tagger("bert_crf", toy_corpus(), {"bert_path": str(longer)})


def test_vocab_txt_lines_are_read_as_tokenizers_reads_them_and_added_tokens_as_their_content(tmp_path):
    """A vocab.txt line with trailing whitespace is the same piece as without; special tokens saved as AddedToken objects (``{"content": "[UNK]", ...}``) are read as their
    content."""
    import json

    padded = _copy(tiny_bert(), tmp_path / "padded")
    (padded / "tokenizer.json").unlink()
    lines = (padded / "vocab.txt").read_text(encoding="utf-8").split("\n")
    lines[-2] += " \t"  # the last piece, with trailing whitespace: the same piece to the tokenizer
    (padded / "vocab.txt").write_text("\n".join(lines), encoding="utf-8")
    special = {"unk_token": {"content": "[UNK]", "lstrip": False, "normalized": False, "rstrip": False,
                             "single_word": False}, "cls_token": {"content": "[CLS]"}, "sep_token": {"content": "[SEP]"}}
    (padded / "special_tokens_map.json").write_text(json.dumps(special), encoding="utf-8")
    loaded = PieceEncoder.load(padded)
    assert loaded.tokenizer.unk_token == "[UNK]" and loaded.tokenizer.cls_token == "[CLS]"
    for text in ["张三在北京", "Apples在北京 CEO", "2008年abc12"]:
        assert loaded.encode(text) == encoder().encode(text)
    with open(padded / "vocab.txt", "a", encoding="utf-8") as vocab:
        vocab.write("张 \n")  # a piece given again with a trailing space: one piece, so the sizes agree
    PieceEncoder.load(padded)  # (counted as two distinct lines, the size check refused the folder)


def test_a_roberta_style_encoder_tags_long_texts_within_its_positions(tmp_path):
    """RoBERTa numbers positions from padding_idx + 1: a window of max_position_embeddings - 2 pieces ran past
    its position table (an IndexError from 32 pieces on)."""
    from transformers import RobertaConfig, RobertaModel

    roberta = _copy(tiny_bert(), tmp_path / "roberta")
    (roberta / "model.safetensors").unlink()
    vocab = len((roberta / "vocab.txt").read_text(encoding="utf-8").splitlines())
    config = RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                           intermediate_size=64, max_position_embeddings=34, pad_token_id=0)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(roberta)
    tagger = build_tagger("bert_crf", toy_corpus(), {"bert_path": str(roberta)})
    assert tagger.bert.window == 31
    tagger.tag_batch(["张三在北京工作。" * 12])  # 96 characters: several windows


def test_a_bert_path_under_the_home_folder_is_read_by_the_tokenizer_too(tmp_path, monkeypatch):
    _copy(tiny_bert(), tmp_path / "models" / "tiny")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert build_tagger("bert_crf", toy_corpus(), {"bert_path": "~/models/tiny"}).featurizer.pieces is not None


def test_an_edited_encoder_config_in_a_saved_model_is_a_model_format_error(tmp_path):
    import json

    from lexner.fileio import ModelFormatError

    build_tagger("bert_crf", toy_corpus(), {"bert_path": str(tiny_bert())}).save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    config["config"]["bert_config"]["hidden_size"] = "32"  # was a raw huggingface_hub validation traceback
    (tmp_path / "m" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="the encoder config in config.json"):
        lexner.load(tmp_path / "m")


def test_special_tokens_written_in_the_text_are_text():
    """"[SEP]" or "[PAD]" typed by a user was encoded as the encoder's separator and padding."""
    ids, char_piece = encoder().encode("[SEP]张[PAD]三")
    special = {encoder().cls_id, encoder().sep_id, encoder().pad_id}
    assert not special & set(ids) and all(k >= 0 for k in char_piece)


def test_a_tokenizer_whose_unknown_token_is_not_in_its_vocabulary_is_refused_as_it_is_read(tmp_path):
    """It loaded, then failed with a bare tokenizers Exception at the first unknown character of a training or
    tagging (helper audit)."""
    from lexner.fileio import ModelFormatError

    broken = _copy(tiny_bert(), tmp_path / "broken")
    data = json.loads((broken / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"]["unk_token"] = "<unk>"  # the vocabulary has [UNK] only
    (broken / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelFormatError, match="cannot encode a text.*unknown token"):
        PieceEncoder.load(broken)
    assert PieceEncoder.load(tiny_bert()).encode("龘张")[0][0] == encoder().tokenizer.unk_token_id  # as it was
