"""Character-level and BPE tokenizers (introduced in notebook 06_training).

Every tokenizer of the course reserves the same four special tokens at the same ids:

    <pad> = 0   fills short sequences up to the batch's length (never attended to, never scored)
    <bos> = 1   "begin of sequence": the decoder's first input
    <eos> = 2   "end of sequence": the last token a model must produce
    <unk> = 3   stands for anything outside the vocabulary

so that batching (``course_lib.batching``), masks, losses and decoding need no tokenizer to know them.
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Iterable, Sequence

from ..validation import check, check_int, check_strings, check_type, describe

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


class _Specials:
    """The special-token ids and the decoding rules shared by both tokenizers."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    vocab_size: int

    def _ids(self, ids: Iterable[int]) -> list[int]:
        """``ids`` as ints, each checked to be in [0, vocab_size)."""
        check(not isinstance(ids, (str, bytes)) and hasattr(ids, "__iter__"), "ids",
              "an iterable of int token ids", ids, TypeError)
        out = [int(i) for i in ids]
        bad = [i for i in out if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"ids must be token ids in [0, {self.vocab_size - 1}] (vocab_size={self.vocab_size}), "
                             f"got {describe(bad)} among them")
        return out

    def _content(self, ids: Iterable[int]) -> list[int]:
        """The ids up to the first <eos>, without <pad> and <bos>."""
        out = []
        for i in self._ids(ids):
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                out.append(i)
        return out


class CharTokenizer(_Specials):
    """One token per character (introduced in notebook 06_training).

    The vocabulary is the four special tokens followed by ``alphabet`` (sorted); any other
    character becomes <unk>.
    """

    def __init__(self, alphabet: Iterable[str]) -> None:
        check(hasattr(alphabet, "__iter__"), "alphabet", "an iterable of single characters", alphabet, TypeError)
        chars = sorted(set(alphabet))
        check(all(isinstance(c, str) for c in chars), "alphabet", "an iterable of single characters",
              alphabet, TypeError)
        long = [c for c in chars if len(c) != 1]
        check(not long, "alphabet", "single characters", long)
        self.itos = list(SPECIAL_TOKENS) + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharTokenizer":
        """A tokenizer whose alphabet is every character that occurs in ``texts``."""
        texts = check_strings("texts", texts, allow_empty=True)
        return cls(set().union(*map(set, texts)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        check_type("text", text, str)
        return [self.stoi.get(c, UNK_ID) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` up to the first <eos>; <pad> and <bos> are skipped."""
        return "".join(self.itos[i] for i in self._content(ids))

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One string per id, special tokens included (labels for plots)."""
        return [self.itos[i] for i in self._ids(ids)]


class BPETokenizer(_Specials):
    """Byte-pair encoding learned from a corpus, with Hugging Face ``tokenizers`` (introduced in notebook 06_training).

    BPE starts from characters and repeatedly merges the most frequent adjacent pair into a
    new token until the vocabulary has ``vocab_size`` entries: frequent words become one
    token, rare words split into pieces, and nothing is out of vocabulary. Words are split at
    spaces (a space becomes the marker "▁" at the start of the next word, so decoding is
    exact) and before punctuation. Text is NFC-normalised, so "é" is one character however
    it was typed.
    """

    def __init__(self, tokenizer) -> None:
        check(all(hasattr(tokenizer, n) for n in ("token_to_id", "encode", "decode")), "tokenizer",
              "a tokenizers.Tokenizer", tokenizer, TypeError)
        self.tokenizer = tokenizer
        for i, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != i:
                raise ValueError(f"the tokenizer must have {token} at id {i}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> "BPETokenizer":
        """Learn the merges from ``texts`` (strings); the special tokens come first, at ids 0..3."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        texts = check_strings("texts", texts)
        check_int("vocab_size", vocab_size, low=len(SPECIAL_TOKENS) + 1)
        check_int("min_frequency", min_frequency, low=1)
        tok = Tokenizer(models.BPE(unk_token=UNK))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        tok.train_from_iterator(texts, trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> "BPETokenizer":
        """Read a tokenizer written by ``save``."""
        from tokenizers import Tokenizer

        check_type("path", path, (str, Path), "a file path (str or Path)")
        if not Path(path).is_file():
            raise FileNotFoundError(f"path must be a tokenizer file written by save, got {str(path)!r}: no such file")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer (vocabulary, merges and settings) to one JSON file."""
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        check_type("text", text, str)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many texts at once (in parallel, in Rust)."""
        texts = check_strings("texts", texts, allow_empty=True)
        return [e.ids for e in self.tokenizer.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` up to the first <eos>; <pad> and <bos> are skipped."""
        return unicodedata.normalize("NFC", self.tokenizer.decode(self._content(ids)))

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One string per id, special tokens included (labels for plots)."""
        return [self.tokenizer.id_to_token(i) for i in self._ids(ids)]
