"""Tokenizers and padded batches (introduced in notebook 06_training).

Every tokenizer of the course reserves the same four special tokens at the same ids:

    <pad> = 0   fills short sequences up to the batch's length (never attended to, never scored)
    <bos> = 1   "begin of sequence": the decoder's first input
    <eos> = 2   "end of sequence": the last token a model must produce
    <unk> = 3   stands for anything outside the vocabulary

so that batching, masks, losses and decoding need no tokenizer to know them.
"""
from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from ..attention import padding_mask
from ..decoder import target_mask

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


class _Specials:
    """The special-token ids and the decoding rules shared by both tokenizers."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def _content(self, ids: Iterable[int]) -> list[int]:
        """The ids up to the first <eos>, without <pad> and <bos>."""
        out = []
        for i in (int(i) for i in ids):
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
        chars = sorted(set(alphabet))
        if any(len(c) != 1 for c in chars):
            raise ValueError("alphabet must be single characters")
        self.itos = list(SPECIAL_TOKENS) + chars
        self.stoi = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "CharTokenizer":
        """A tokenizer whose alphabet is every character that occurs in ``texts``."""
        return cls(set().union(*map(set, texts)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        return [self.stoi.get(c, UNK_ID) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` up to the first <eos>; <pad> and <bos> are skipped."""
        return "".join(self.itos[i] for i in self._content(ids))

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One string per id, special tokens included (labels for plots)."""
        return [self.itos[int(i)] for i in ids]


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
        self.tokenizer = tokenizer
        for i, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != i:
                raise ValueError(f"the tokenizer must have {token} at id {i}")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, min_frequency: int = 2) -> "BPETokenizer":
        """Learn the merges from ``texts`` (strings); the special tokens come first, at ids 0..3."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

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

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer (vocabulary, merges and settings) to one JSON file."""
        self.tokenizer.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """``encode`` for many texts at once (in parallel, in Rust)."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids`` up to the first <eos>; <pad> and <bos> are skipped."""
        return unicodedata.normalize("NFC", self.tokenizer.decode(self._content(ids)))

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """One string per id, special tokens included (labels for plots)."""
        return [self.tokenizer.id_to_token(int(i)) for i in ids]


def pad_sequences(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> Tensor:
    """Right-pad lists of ids to one (batch, longest) LongTensor (introduced in notebook 06_training)."""
    if not sequences:
        raise ValueError("pad_sequences needs at least one sequence")
    out = torch.full((len(sequences), max(map(len, sequences))), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


@dataclass
class Batch:
    """One padded batch for an encoder-decoder model, with its masks (introduced in notebook 06_training).

    src:      (batch, src) source ids, each ending in <eos>
    tgt_in:   (batch, tgt) the decoder's input:  <bos> y1 ... yn   (teacher forcing)
    tgt_out:  (batch, tgt) what it must predict: y1 ... yn <eos>  (tgt_in shifted left by one)
    src_mask: (batch, 1, src) True at real source tokens
    tgt_mask: (batch, tgt, tgt) True where query t may attend to key s: s <= t and s is no padding
    """

    src: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    src_mask: Tensor
    tgt_mask: Tensor

    @property
    def num_tokens(self) -> int:
        """How many target tokens are scored (padding excluded)."""
        return int((self.tgt_out != PAD_ID).sum())

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))


def make_batch(sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> Batch:
    """A Batch from lists of source and target ids (without special tokens) (introduced in notebook 06_training)."""
    if len(sources) != len(targets):
        raise ValueError(f"as many sources as targets, got {len(sources)} and {len(targets)}")
    src = pad_sequences([list(s) + [EOS_ID] for s in sources])
    tgt_in = pad_sequences([[BOS_ID] + list(t) for t in targets])
    tgt_out = pad_sequences([list(t) + [EOS_ID] for t in targets])
    return Batch(src, tgt_in, tgt_out, padding_mask(src, PAD_ID), target_mask(tgt_in, PAD_ID))


class BatchLoader:
    """Iterates over padded Batches of (source ids, target ids) pairs (introduced in notebook 06_training).

    With ``shuffle``, every pass draws a new order; pairs of similar source length share a
    batch (sorted within pools of 50 batches), so that little compute goes to padding.
    ``max_tokens`` additionally caps the padded size (batch x longest sequence) of a batch.
    """

    def __init__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int,
                 shuffle: bool = True, seed: int = 0, max_tokens: int | None = None) -> None:
        if not pairs:
            raise ValueError("BatchLoader needs at least one pair")
        self.pairs, self.batch_size, self.shuffle, self.max_tokens = list(pairs), batch_size, shuffle, max_tokens
        self.rng = random.Random(seed)
        self._fixed = None if shuffle else self._group(list(range(len(self.pairs))))

    def _group(self, order: list[int]) -> list[list[int]]:
        length = lambda i: max(len(self.pairs[i][0]), len(self.pairs[i][1])) + 2  # noqa: E731
        pool = 50 * self.batch_size
        groups = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start:start + pool], key=length)
            group: list[int] = []
            for i in chunk:  # ascending length: pair i is the longest of its group so far
                if group and (len(group) == self.batch_size
                              or (self.max_tokens and length(i) * (len(group) + 1) > self.max_tokens)):
                    groups.append(group)
                    group = []
                group.append(i)
            groups.append(group)
        return groups

    def __iter__(self) -> Iterator[Batch]:
        if self._fixed is not None:
            groups = self._fixed
        else:
            order = list(range(len(self.pairs)))
            self.rng.shuffle(order)
            groups = self._group(order)
            self.rng.shuffle(groups)
        for group in groups:
            yield make_batch([self.pairs[i][0] for i in group], [self.pairs[i][1] for i in group])

    def __len__(self) -> int:
        return len(self._fixed if self._fixed is not None else self._group(list(range(len(self.pairs)))))
