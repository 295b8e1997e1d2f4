"""Tiny BiLSTM taggers for the runtime tests (lexner.onnx_encoder: ONNX Runtime and bfloat16)."""

import torch

from lexner.api import build_tagger
from lexner.lexicon import Lexicon

SMALL = {"char_dim": 8, "bigram_dim": 8, "hidden": 16}
TEXTS = ["张三在北京大学工作。", "李四去了广州市", "Elon Musk 在 上海", "我", "国际奥委会主席罗格出席开幕式。" * 3]


def tagger_of(name, corpus, random_crf=False):
    """A small untrained ``bilstm_crf`` or ``softlexicon`` (with a five-word lexicon) in eval mode; with
    ``random_crf``, random transition scores, so that entities get predicted."""
    torch.manual_seed(0)
    extra = {"word_dim": 8} if name == "softlexicon" else {}
    lexicon = Lexicon(["北京", "北京大学", "广州", "广州市", "上海"]) if name == "softlexicon" else None
    tagger = build_tagger(name, corpus, {**SMALL, **extra}, lexicon=lexicon, seed=0).eval()
    if random_crf:
        with torch.no_grad():
            for p in tagger.crf.parameters():
                p.normal_(0, 1)
    return tagger
