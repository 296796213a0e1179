"""Checks of notebook 07_bert: masked-token corruption, next-sentence pairs, the classification head."""
from __future__ import annotations

import random
from typing import Callable

import torch
from torch import Tensor, nn

from .. import bert
from .engine import CheckFailed, check_close, exercise


def _mlm_batch(seed: int = 11) -> tuple[Tensor, Tensor]:
    """(64, 48) ids in 10..499 with [CLS]=1, [SEP]=2, [PAD]=0 placed as a tokenizer would."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(10, 500, (64, 48), generator=g)
    lengths = torch.randint(6, 49, (64,), generator=g)
    ids[:, 0] = 1
    ids[torch.arange(64), lengths - 1] = 2
    ids = ids.masked_fill(torch.arange(48) >= lengths[:, None], 0)
    return ids, torch.isin(ids, torch.tensor([0, 1, 2]))


@exercise(forbid={"course_lib.bert.mask_tokens": bert.mask_tokens})
def check_mask_tokens(mask_tokens: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """mask_tokens(input_ids, special_mask, mask_token_id, vocab_size, generator) -> (inputs, labels):
    BERT's 15% / 80-10-10 corruption."""
    ids, special = _mlm_batch()
    before = ids.clone()
    result = mask_tokens(ids, special, 3, 500, generator=torch.Generator().manual_seed(0))
    if not torch.equal(ids, before):
        raise CheckFailed("mask_tokens changed input_ids in place; corrupt a copy (input_ids.clone())")
    if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(t, Tensor) for t in result)):
        raise CheckFailed("mask_tokens should return a tuple (inputs, labels) of two tensors"
                          + (" (did you forget to `return` it?)" if result is None else ""))
    inputs, labels = result
    torch.manual_seed(1)  # the global generator moves: an answer that uses it draws differently
    again = mask_tokens(ids, special, 3, 500, generator=torch.Generator().manual_seed(0))
    if not (isinstance(again, tuple) and all(torch.equal(a, b) for a, b in zip(again, result))):
        raise CheckFailed("two calls with the same generator gave different results: draw every random number "
                          "from `generator` (torch.rand(shape, generator=generator), torch.randint(..., "
                          "generator=generator)), never from the global random state")
    for name, t in (("inputs", inputs), ("labels", labels)):
        if t.shape != ids.shape:
            raise CheckFailed(f"{name} should have the shape of input_ids {tuple(ids.shape)}, got {tuple(t.shape)}")
    chosen = labels != -100
    if chosen.all():
        raise CheckFailed("labels should be -100 wherever the token was not chosen: the loss must skip "
                          "those positions (did you copy input_ids into labels?)")
    if (chosen & special).any():
        raise CheckFailed("a special token ([CLS], [SEP]) or padding was chosen: never choose a position "
                          "where special_mask is True")
    if not torch.equal(labels[chosen], ids[chosen]):
        raise CheckFailed("labels should hold the original token at each chosen position "
                          "(not [MASK], not the corrupted input)")
    if not torch.equal(inputs[~chosen], ids[~chosen]):
        raise CheckFailed("a token that was not chosen (label -100) was changed: only chosen tokens "
                          "are corrupted")
    rate = chosen.sum().item() / (~special).sum().item()
    if not 0.12 < rate < 0.18:
        raise CheckFailed(f"{rate:.1%} of the eligible tokens were chosen, expected about 15%")
    n = chosen.sum().item()
    masked = (inputs[chosen] == 3).sum().item() / n
    kept = (inputs[chosen] == ids[chosen]).sum().item() / n
    if masked > 0.95:
        raise CheckFailed("every chosen token became [MASK]: 10% of them should become a random token "
                          "and 10% stay as they are")
    if not 0.72 < masked < 0.88:
        raise CheckFailed(f"{masked:.0%} of the chosen tokens became [MASK], expected about 80%")
    if not 0.04 < kept < 0.17:
        raise CheckFailed(f"{kept:.0%} of the chosen tokens stayed as they were, expected about 10%")
    if not 0.04 < 1 - masked - kept < 0.17:
        raise CheckFailed(f"{1 - masked - kept:.0%} of the chosen tokens became a random token, expected about 10%")


@exercise(forbid={"course_lib.bert.make_nsp_pairs": bert.make_nsp_pairs})
def check_nsp_pairs(make_nsp_pairs: Callable[..., list]) -> None:
    """make_nsp_pairs(documents, rng) -> [(sentence_a, sentence_b, is_next), ...]; two document sets:
    many documents of mixed lengths (one has a single sentence), and two long ones, where a random B
    drawn from any document would often come from A's own."""
    for documents in ([[f"doc{d}-sentence{s}" for s in range(n)] for d, n in enumerate([5, 1, 8, 3, 12, 6, 2, 9] * 4)],
                      [[f"doc{d}-sentence{s}" for s in range(20)] for d in range(2)]):
        _check_nsp_pairs_on(make_nsp_pairs, documents)


def _check_nsp_pairs_on(make_nsp_pairs: Callable[..., list], documents: list[list[str]]) -> None:
    where = {s: (d, i) for d, doc in enumerate(documents) for i, s in enumerate(doc)}
    pairs = make_nsp_pairs(documents, random.Random(0))
    if not isinstance(pairs, list):
        raise CheckFailed(f"make_nsp_pairs should return a list of (sentence_a, sentence_b, is_next) tuples, "
                          f"got {type(pairs).__name__}"
                          + (" (did you forget to `return` it?)" if pairs is None else ""))
    if not all(isinstance(p, tuple) and len(p) == 3 for p in pairs):
        raise CheckFailed("each pair should be a tuple (sentence_a, sentence_b, is_next)")

    def really_next(a: str, b: str) -> bool:
        (da, ia), (db, ib) = where[a], where[b]
        return da == db and ib == ia + 1

    known = all(a in where and b in where for a, b, _ in pairs)
    if known and pairs and all(really_next(a, b) != bool(n) for a, b, n in pairs):
        raise CheckFailed("is_next is inverted: it must be True when B is the sentence that follows A, "
                          "False for a random B from another document")
    for a, b, is_next in pairs:
        if a not in where or b not in where:
            raise CheckFailed(f"sentences should be taken from the documents as they are, got {a!r} / {b!r}")
        (da, ia), (db, ib) = where[a], where[b]
        if ia == len(documents[da]) - 1:
            raise CheckFailed(f"{a!r} is the last sentence of its document: it has no next sentence, so it "
                              "should not be a sentence A")
        if is_next and not (da == db and ib == ia + 1):
            raise CheckFailed(f"({a!r}, {b!r}) is marked is_next=True but B is not the sentence after A")
        if not is_next and da == db:
            raise CheckFailed(f"({a!r}, {b!r}) is a random pair whose B comes from A's own document: draw B "
                              "from another document")
    expected = sorted(s for doc in documents for s in doc[:-1])
    if sorted(a for a, _, _ in pairs) != expected:
        raise CheckFailed(f"every sentence that has a next sentence should be sentence A exactly once "
                          f"({len(expected)} pairs), got {len(pairs)} pairs")
    share = sum(bool(p[2]) for p in pairs) / len(pairs)
    if not 0.35 < share < 0.65:
        raise CheckFailed(f"{share:.0%} of the pairs are real next sentences, expected about 50%")


@exercise(forbid={"course_lib.bert.ClassificationHead": bert.ClassificationHead})
def check_classification_head(head_class: type[nn.Module]) -> None:
    """head_class(hidden_size, num_labels, dropout) with attributes dense, dropout, classifier:
    logits = classifier(dropout(tanh(dense(hidden_states[:, 0]))))."""
    torch.manual_seed(0)
    reference = bert.ClassificationHead(16, 3, dropout=0.1).eval()
    head = head_class(16, 3, 0.1)
    for name in ("dense", "dropout", "classifier"):
        if not hasattr(head, name):
            raise CheckFailed(f"the head should have an attribute `{name}` (see the contract)")
    try:
        head.load_state_dict(reference.state_dict())
    except RuntimeError as error:
        raise CheckFailed(f"dense should be nn.Linear(hidden_size, hidden_size) and classifier "
                          f"nn.Linear(hidden_size, num_labels): {str(error).splitlines()[-1].strip()}") from None
    head.eval()
    h = torch.randn(4, 7, 16, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = head(h)
        classify = lambda v: reference.classifier(torch.tanh(reference.dense(v)))
        mistakes = {
            "it averages all positions; BERT classifies from the first token, [CLS] (hidden_states[:, 0])":
                classify(h.mean(1)),
            "it reads the last position; [CLS] is the first one (hidden_states[:, 0])": classify(h[:, -1]),
            "the tanh after dense is missing (BERT's pooler is tanh(dense(h_cls)))":
                reference.classifier(reference.dense(h[:, 0])),
            "dense (the pooler) is skipped: classifier(dropout(tanh(dense(h_cls))))":
                reference.classifier(h[:, 0]),
        }
        check_close(out, reference(h), "the logits", mistakes)
    head.train()
    torch.manual_seed(1)
    if torch.allclose(head(h), head(h)):
        raise CheckFailed("in training mode two calls gave the same logits: is dropout applied?")
