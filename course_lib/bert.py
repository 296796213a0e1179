"""BERT from course_lib's own parts, able to load Hugging Face's pretrained weights (introduced in notebook 07_bert).

BERT is the encoder of notebook 04 with three changes: learned position embeddings and a
*segment* (token type) embedding are added to the token embeddings, followed by a LayerNorm;
the feed-forward network uses GELU; and LayerNorm's eps is 1e-12. The layers are post-LN, as
in the original Transformer. A *pooler* (dense + tanh on the first token, [CLS]) gives one
vector per sequence for sentence-level tasks.

It is pre-trained on two tasks, both self-supervised:

- masked language modelling (MLM): 15% of the tokens are chosen; of those, 80% become
  [MASK], 10% a random token and 10% stay as they are; the model predicts the originals;
- next-sentence prediction (NSP): given sentences A and B, was B the sentence after A
  (50% of pairs) or a random sentence from elsewhere (50%)?

Hugging Face's ``BertModel`` state dicts load with ``load_hf_state_dict`` (or
``from_pretrained``): the same numbers, our module names.
"""
from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .encoder import Encoder, LayerNorm
from .positional import LearnedPositionalEmbedding
from .validation import (
    check,
    check_int,
    check_number,
    check_strings,
    check_tensor,
    check_token_ids,
    check_type,
    describe,
)

IGNORE_INDEX = -100  # the label of a position that the MLM loss skips (cross_entropy's default ignore_index)


@dataclass(frozen=True)
class BertConfig:
    """BERT's hyper-parameters; the defaults are BERT-base's (introduced in notebook 07_bert)."""

    vocab_size: int = 30522
    d_model: int = 768
    num_layers: int = 12
    num_heads: int = 12
    d_ff: int = 3072
    max_len: int = 512
    type_vocab_size: int = 2
    dropout: float = 0.1
    attention_dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "num_layers", "num_heads", "d_ff", "max_len", "type_vocab_size"):
            check_int(name, getattr(self, name), low=1)
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads must divide d_model={self.d_model}, got {self.num_heads}")
        for name in ("dropout", "attention_dropout"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        check_number("layer_norm_eps", self.layer_norm_eps, 0.0, low_open=True)
        check_int("pad_token_id", self.pad_token_id, 0, self.vocab_size - 1)

    @classmethod
    def from_hf(cls, config: Any) -> "BertConfig":
        """From a ``transformers.BertConfig`` or the dict of a ``config.json``."""
        check(isinstance(config, dict) or hasattr(config, "to_dict"), "config",
              "a transformers.BertConfig or the dict of a config.json", config, TypeError)
        c = config if isinstance(config, dict) else config.to_dict()
        needed = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "hidden_dropout_prob",
                  "attention_probs_dropout_prob", "layer_norm_eps")
        missing = [key for key in needed if key not in c]
        if missing:
            raise ValueError(f"config must be a BERT configuration with {', '.join(needed)}, got one without "
                             f"{', '.join(missing)}")
        if c.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"only hidden_act='gelu' (the exact, erf GELU) is supported, got {c['hidden_act']!r}")
        if c.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"only absolute position embeddings are supported, got {c['position_embedding_type']!r}")
        return cls(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                   c["intermediate_size"], c["max_position_embeddings"], c["type_vocab_size"],
                   c["hidden_dropout_prob"], c["attention_probs_dropout_prob"], c["layer_norm_eps"],
                   c.get("pad_token_id") or 0)


class BertStates(NamedTuple):
    hidden_states: Tensor        # (batch, seq, d_model): one vector per token
    pooled: Tensor | None        # (batch, d_model): tanh(dense([CLS] vector)), None without a pooler


class BertEmbeddings(nn.Module):
    """Token + learned position + segment embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        check_type("config", config, BertConfig)
        d = config.d_model
        self.word_embeddings = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.position = LearnedPositionalEmbedding(config.max_len, d)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, d)
        self.norm = LayerNorm(d, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """input_ids, token_type_ids: (batch, seq) ints (segment 0 when None) -> (batch, seq, d_model)."""
        check_token_ids("input_ids", input_ids, self.word_embeddings.num_embeddings)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        else:
            check_token_ids("token_type_ids", token_type_ids, self.token_type_embeddings.num_embeddings)
            if token_type_ids.shape != input_ids.shape:
                raise ValueError(f"token_type_ids must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(token_type_ids.shape)}")
        x = self.position(self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.norm(x))


class Bert(nn.Module):
    """BERT's encoder: embeddings, a post-LN GELU ``Encoder`` and an optional pooler
    (introduced in notebook 07_bert). Equal to ``transformers.BertModel`` with the same weights.
    """

    def __init__(self, config: BertConfig, pooler: bool = True, fast: bool = False) -> None:
        super().__init__()
        check_type("config", config, BertConfig)
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = Encoder(config.num_layers, config.d_model, config.num_heads, config.d_ff,
                               dropout=config.dropout, norm_first=False, activation="gelu",
                               layer_norm_eps=config.layer_norm_eps, fast=fast)
        for layer in self.encoder.layers:
            layer.self_attn.dropout = config.attention_dropout
            # torch's (and our) feed-forward block has a dropout between its two linear maps; BERT's has none
            layer.ff.dropout = nn.Identity()
        self.pooler = nn.Linear(config.d_model, config.d_model) if pooler else None

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> BertStates:
        """input_ids: (batch, seq); attention_mask: (batch, seq), 1 or True at real tokens and 0 at padding
        (Hugging Face's tokenizers give it); token_type_ids: (batch, seq) segment ids.
        Returns BertStates(hidden_states (batch, seq, d_model), pooled (batch, d_model))."""
        mask = None
        if attention_mask is not None:
            check_tensor("attention_mask", attention_mask, "batch seq")
            check_tensor("input_ids", input_ids, "batch seq")
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(attention_mask.shape)}")
            mask = attention_mask.bool().unsqueeze(1)  # (batch, 1, seq): True = this key may be attended to
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids), mask)
        pooled = torch.tanh(self.pooler(hidden[:, 0])) if self.pooler is not None else None
        return BertStates(hidden, pooled)

    def load_hf_state_dict(self, state_dict: dict[str, Tensor]) -> list[str]:
        """Load a Hugging Face BERT state dict; returns the keys it did not use (heads, buffers).
        Raises ValueError when a weight this model needs is missing or has another shape."""
        return _load(self, state_dict, _BERT_KEYS)

    @classmethod
    def from_pretrained(cls, source: str | Path, pooler: bool = True, fast: bool = False) -> "Bert":
        """A Bert with the weights of a Hugging Face checkpoint: a local folder (config.json +
        model.safetensors or pytorch_model.bin) or a hub id such as "bert-base-cased"."""
        config, state_dict = read_checkpoint(source)
        model = cls(BertConfig.from_hf(config), pooler=pooler, fast=fast)
        model.load_hf_state_dict(state_dict)
        return model.eval()


class ClassificationHead(nn.Module):
    """Sentence classification from the [CLS] vector: classifier(dropout(tanh(dense(h[:, 0])))).

    ``dense`` is BERT's pooler, pre-trained with NSP."""

    def __init__(self, d_model: int, num_labels: int, dropout: float = 0.1) -> None:
        super().__init__()
        check_int("d_model", d_model, low=1)
        check_int("num_labels", num_labels, low=1)
        check_number("dropout", dropout, 0.0, 1.0)
        self.dense = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)

    def forward(self, hidden_states: Tensor) -> Tensor:
        """hidden_states: (batch, seq, d_model) -> logits (batch, num_labels)."""
        check_tensor("hidden_states", hidden_states, "batch seq d_model", "float", d_model=self.dense.in_features)
        return self.classifier(self.dropout(torch.tanh(self.dense(hidden_states[:, 0]))))


class BertForClassification(nn.Module):
    """Bert (without its own pooler) + ClassificationHead.

    Equal to ``transformers.BertForSequenceClassification`` with the same weights."""

    def __init__(self, config: BertConfig, num_labels: int, fast: bool = False) -> None:
        super().__init__()
        check_type("config", config, BertConfig)
        self.bert = Bert(config, pooler=False, fast=fast)
        self.head = ClassificationHead(config.d_model, num_labels, config.dropout)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(batch, seq) ids and masks as in Bert -> logits (batch, num_labels)."""
        return self.head(self.bert(input_ids, attention_mask, token_type_ids).hidden_states)

    def load_hf_state_dict(self, state_dict: dict[str, Tensor], strict_head: bool = True) -> list[str]:
        """Load a ``BertForSequenceClassification`` state dict (or, with ``strict_head=False``, a
        ``BertModel`` one: the classifier then keeps its fresh weights). Returns the unused keys."""
        keys = {**_in_bert(_BERT_KEYS), r"pooler\.dense\.": "head.dense.", r"classifier\.": "head.classifier."}
        optional = () if strict_head else ("head.classifier.",)
        return _load(self, state_dict, keys, optional)


class MaskedLMHead(nn.Module):
    """BERT's MLM head: dense + GELU + LayerNorm, then a projection onto the vocabulary whose weight
    is the word-embedding matrix (tied) plus a bias."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        check_type("config", config, BertConfig)
        check_type("word_embeddings", word_embeddings, nn.Embedding)
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.norm = LayerNorm(config.d_model, config.layer_norm_eps)
        self.word_embeddings = word_embeddings  # shared, not copied: the same Parameter
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden_states: Tensor) -> Tensor:
        """(batch, seq, d_model) -> logits over the vocabulary (batch, seq, vocab_size)."""
        check_tensor("hidden_states", hidden_states, "batch seq d_model", "float", d_model=self.dense.in_features)
        return self.norm(F.gelu(self.dense(hidden_states))) @ self.word_embeddings.weight.T + self.bias


class BertForMaskedLM(nn.Module):
    """Bert + MaskedLMHead (introduced in notebook 07_bert). Equal to ``transformers.BertForMaskedLM``."""

    def __init__(self, config: BertConfig, fast: bool = False) -> None:
        super().__init__()
        check_type("config", config, BertConfig)
        self.bert = Bert(config, pooler=False, fast=fast)
        self.head = MaskedLMHead(config, self.bert.embeddings.word_embeddings)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> Tensor:
        """(batch, seq) ids and masks as in Bert -> logits (batch, seq, vocab_size)."""
        return self.head(self.bert(input_ids, attention_mask, token_type_ids).hidden_states)

    def load_hf_state_dict(self, state_dict: dict[str, Tensor]) -> list[str]:
        """Load a ``BertForMaskedLM`` (or ``BertForPreTraining``) state dict; returns the unused keys."""
        keys = {**_in_bert(_BERT_KEYS),
                r"cls\.predictions\.transform\.dense\.": "head.dense.",
                r"cls\.predictions\.transform\.LayerNorm\.": "head.norm.",
                r"cls\.predictions\.bias$": "head.bias"}
        return _load(self, state_dict, keys)


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy over the masked positions only: labels are IGNORE_INDEX (-100) elsewhere.

    logits: (batch, seq, vocab), labels: (batch, seq)."""
    check_tensor("logits", logits, "batch seq vocab", "float")
    check_tensor("labels", labels, "batch seq", "index", batch=logits.shape[0], seq=logits.shape[1])
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


# Hugging Face's BertModel names (a regex on the start of a key) -> ours.
_BERT_KEYS = {
    r"embeddings\.word_embeddings\.": "embeddings.word_embeddings.",
    r"embeddings\.position_embeddings\.": "embeddings.position.embedding.",
    r"embeddings\.token_type_embeddings\.": "embeddings.token_type_embeddings.",
    r"embeddings\.LayerNorm\.": "embeddings.norm.",
    r"encoder\.layer\.(\d+)\.attention\.self\.query\.": r"encoder.layers.\1.self_attn.w_q.",
    r"encoder\.layer\.(\d+)\.attention\.self\.key\.": r"encoder.layers.\1.self_attn.w_k.",
    r"encoder\.layer\.(\d+)\.attention\.self\.value\.": r"encoder.layers.\1.self_attn.w_v.",
    r"encoder\.layer\.(\d+)\.attention\.output\.dense\.": r"encoder.layers.\1.self_attn.w_o.",
    r"encoder\.layer\.(\d+)\.attention\.output\.LayerNorm\.": r"encoder.layers.\1.norm1.",
    r"encoder\.layer\.(\d+)\.intermediate\.dense\.": r"encoder.layers.\1.ff.linear1.",
    r"encoder\.layer\.(\d+)\.output\.dense\.": r"encoder.layers.\1.ff.linear2.",
    r"encoder\.layer\.(\d+)\.output\.LayerNorm\.": r"encoder.layers.\1.norm2.",
    r"pooler\.dense\.": "pooler.",
}


def _in_bert(keys: dict[str, str]) -> dict[str, str]:
    """The same map for a model that holds a pooler-less Bert as ``bert`` (its head owns the pooler)."""
    return {hf: "bert." + ours for hf, ours in keys.items() if not hf.startswith("pooler")}


def _load(model: nn.Module, state_dict: dict[str, Tensor], keys: dict[str, str],
          optional: Sequence[str] = ()) -> list[str]:
    ours = model.state_dict()
    loaded, unused = {}, []
    for key, value in state_dict.items():
        # TF-era checkpoints name LayerNorm's parameters gamma and beta; BertFor... models prefix "bert."
        key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key))
        key = key.removeprefix("bert.")
        for pattern, replacement in keys.items():
            if re.match(pattern, key):
                name = re.sub(pattern, replacement, key, count=1)
                if name in ours:
                    loaded[name] = value
                    break
        else:
            unused.append(key)
    for name, value in loaded.items():
        if value.shape != ours[name].shape:
            raise ValueError(f"{name}: the checkpoint's tensor has shape {tuple(value.shape)}, "
                             f"the model's {tuple(ours[name].shape)}: do the configurations match?")
    tied = {name for name in ours if name == "head.word_embeddings.weight"}  # the same tensor as the embeddings'
    missing = [n for n in ours if n not in loaded and n not in tied and not n.startswith(tuple(optional))]
    if missing:
        raise ValueError(f"the state dict lacks {len(missing)} weights of this model, e.g. {missing[:4]}")
    with torch.no_grad():
        for name, value in loaded.items():
            ours[name].copy_(value)
    return unused


def read_checkpoint(source: str | Path) -> tuple[dict, dict[str, Tensor]]:
    """The config dict and state dict of a Hugging Face checkpoint, from a local folder or the hub."""
    from safetensors.torch import load_file

    check_type("source", source, (str, Path), "a local folder (str or Path) or a hub id (str)")
    folder = Path(source)
    # a hub id is "name" or "owner/name"; a Path, "./x", "/x", "~/x" or "a/b/c" can only be a folder
    text = str(source)
    local = isinstance(source, Path) or text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
    if local and not folder.expanduser().is_dir():
        raise FileNotFoundError(f"source must be a checkpoint folder or a hub id such as 'bert-base-cased', "
                                f"got {text!r}: no such folder")
    folder = folder.expanduser()
    if not folder.is_dir():
        from huggingface_hub import hf_hub_download  # only the hub path needs it
        from huggingface_hub.errors import EntryNotFoundError
        config = json.loads(Path(hf_hub_download(str(source), "config.json")).read_text())
        try:
            return config, load_file(hf_hub_download(str(source), "model.safetensors"))
        except EntryNotFoundError:  # older repositories have only the pickled weights
            weights = hf_hub_download(str(source), "pytorch_model.bin")
            return config, torch.load(weights, map_location="cpu", weights_only=True)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"source must be a checkpoint folder with a config.json, got {text!r}: it has none")
    config = json.loads((folder / "config.json").read_text())
    if (folder / "model.safetensors").is_file():
        return config, load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return config, torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"{folder} has config.json but neither model.safetensors nor pytorch_model.bin")


def parameter_counts(config: BertConfig) -> dict[str, int]:
    """Parameters of a BERT (with its pooler) by part, from the configuration alone
    (introduced in notebook 07_bert)."""
    check_type("config", config, BertConfig)
    d, f, L = config.d_model, config.d_ff, config.num_layers
    embeddings = (config.vocab_size + config.max_len + config.type_vocab_size) * d + 2 * d
    attention = 4 * (d * d + d)                  # W_q, W_k, W_v, W_o with their biases
    feed_forward = (d * f + f) + (f * d + d)
    layer = attention + feed_forward + 2 * 2 * d  # two LayerNorms
    counts = {"embeddings": embeddings, "encoder layers": L * layer, "pooler": d * d + d}
    return {**counts, "total": sum(counts.values())}


# --- pre-training data: masked language modelling and next-sentence prediction -------------

def special_tokens_mask(input_ids: Tensor, special_ids: Sequence[int]) -> Tensor:
    """(batch, seq) bool, True where the token is one of ``special_ids`` ([CLS], [SEP], [PAD], ...)
    (introduced in notebook 07_bert)."""
    check_tensor("input_ids", input_ids, dtype="integer")
    check(not isinstance(special_ids, (str, bytes)) and hasattr(special_ids, "__iter__"), "special_ids",
          "an iterable of int token ids", special_ids, TypeError)
    special_ids = list(special_ids)
    check(all(isinstance(i, int) and not isinstance(i, bool) for i in special_ids), "special_ids",
          "an iterable of int token ids", special_ids, TypeError)
    return torch.isin(input_ids, torch.as_tensor(list(special_ids), device=input_ids.device))


def mask_tokens(input_ids: Tensor, special_mask: Tensor, mask_token_id: int, vocab_size: int,
                mlm_probability: float = 0.15, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT's MLM corruption.

    input_ids: (batch, seq); special_mask: (batch, seq) bool, True where a token must never be
    chosen (special tokens and padding). Each other token is chosen with probability
    ``mlm_probability``; a chosen token becomes [MASK] with probability 0.8, a random token
    with 0.1, and stays with 0.1. Returns (inputs, labels), both (batch, seq): the corrupted
    ids, and the original id at chosen positions, IGNORE_INDEX (-100) elsewhere.
    """
    check_tensor("input_ids", input_ids, dtype="integer")
    check_tensor("special_mask", special_mask, dtype="bool")
    check(special_mask.shape == input_ids.shape, "special_mask",
          f"a bool tensor of input_ids' shape {tuple(input_ids.shape)}", special_mask)
    check_int("vocab_size", vocab_size, low=1)
    check_int("mask_token_id", mask_token_id, 0, vocab_size - 1)
    check_number("mlm_probability", mlm_probability, 0.0, 1.0)
    where = generator.device if generator is not None else "cpu"  # draws follow the generator's device
    chosen = (torch.rand(input_ids.shape, generator=generator, device=where) < mlm_probability)
    chosen = chosen.to(input_ids.device) & ~special_mask
    labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
    action = torch.rand(input_ids.shape, generator=generator, device=where).to(input_ids.device)
    random_ids = torch.randint(vocab_size, input_ids.shape, generator=generator, device=where).to(input_ids.device)
    inputs = torch.where(chosen & (action < 0.8), mask_token_id, input_ids)
    inputs = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs, labels


class NSPPair(NamedTuple):
    sentence_a: str
    sentence_b: str
    is_next: bool   # Hugging Face's next_sentence_label is 0 for True (B follows A), 1 for False


def make_nsp_pairs(documents: Sequence[Sequence[str]], rng: random.Random) -> list[NSPPair]:
    """Next-sentence-prediction pairs.

    ``documents`` is a list of documents, each a list of sentences in order. For every sentence
    A that has a next sentence in its document: with probability 1/2, B is that next sentence
    (is_next True); otherwise B is a sentence drawn at random from another document
    (is_next False). ``rng`` draws every random choice.
    """
    check(isinstance(documents, Sequence) and not isinstance(documents, str), "documents",
          "a list of documents, each a list of sentences", documents, TypeError)
    for i, document in enumerate(documents):
        check_strings(f"documents[{i}]", document, allow_empty=True)
    check_type("rng", rng, random.Random, "a random.Random")
    if sum(1 for d in documents if d) < 2:
        raise ValueError(f"documents must hold at least 2 documents with sentences (a random B comes from "
                         f"another document), got {describe(documents)}")
    pairs = []
    for d, document in enumerate(documents):
        for a, following in zip(document, document[1:]):
            if rng.random() < 0.5:
                pairs.append(NSPPair(a, following, True))
            else:
                other = rng.choice([i for i in range(len(documents)) if i != d and documents[i]])
                pairs.append(NSPPair(a, rng.choice(documents[other]), False))
    return pairs
