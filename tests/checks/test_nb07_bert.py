"""course_lib.checks.nb07_bert: each check accepts a correct answer and names each mistake it claims to detect."""
import pytest
import torch
from student_copies import student_copy

from course_lib import bert, checks

ClassificationHead, make_nsp_pairs, mask_tokens = map(student_copy, (bert.ClassificationHead, bert.make_nsp_pairs,
                                                                   bert.mask_tokens))


def student_mask_tokens(mistake=None):
    """course_lib's mask_tokens, or one mistake made on top of it."""
    def fn(input_ids, special_mask, mask_token_id, vocab_size, generator=None):
        if mistake == "in place":
            inputs, labels = mask_tokens(input_ids, special_mask, mask_token_id, vocab_size, generator=generator)
            input_ids.copy_(inputs)
            return inputs, labels
        if mistake == "specials":
            special_mask = torch.zeros_like(special_mask)
        inputs, labels = mask_tokens(input_ids, special_mask, mask_token_id, vocab_size,
                                     mlm_probability=0.5 if mistake == "rate" else 0.15, generator=generator)
        chosen = labels != -100
        if mistake == "labels copied":
            labels = input_ids.clone()
        elif mistake == "all masked":
            inputs = input_ids.masked_fill(chosen, mask_token_id)
        elif mistake == "labels are inputs":
            labels = torch.where(chosen, inputs, labels)
        elif mistake == "no random":
            inputs = torch.where(chosen & (inputs != mask_token_id), input_ids, inputs)
        elif mistake == "none":
            return None
        return inputs, labels
    return fn


def test_mask_tokens_check_accepts_course_lib():
    checks.check_mask_tokens(student_mask_tokens())


@pytest.mark.parametrize("mistake, fragment", [
    ("in place", "in place"),
    ("specials", "special_mask is True"),
    ("labels copied", "-100"),
    ("all masked", "every chosen token became [MASK]"),
    ("labels are inputs", "original token"),
    ("rate", "expected about 15%"),
    ("no random", "stayed as they were"),
    ("none", "forget to `return`"),
])
def test_mask_tokens_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_mask_tokens, student_mask_tokens(mistake), fragment)


def student_nsp_pairs(mistake=None):
    """Next-sentence pairs as a student writes them, with one mistake (or none)."""
    def fn(documents, rng):
        pairs = []
        for d, doc in enumerate(documents):
            for i, a in enumerate(doc if mistake == "last too" else doc[:-1]):
                if i + 1 < len(doc) and (rng.random() < 0.5 or mistake == "always next"):
                    pairs.append((a, doc[i + 1], mistake != "inverted"))
                else:
                    others = range(len(documents)) if mistake == "any document" else \
                        [j for j in range(len(documents)) if j != d and documents[j]]
                    b = rng.choice(documents[rng.choice(list(others))])
                    pairs.append((a, b, mistake == "inverted"))
        return pairs
    return fn


@pytest.mark.parametrize("student", [make_nsp_pairs, student_nsp_pairs()], ids=["course_lib", "student"])
def test_nsp_pairs_check_accepts_right_pairs(student):
    checks.check_nsp_pairs(student)


@pytest.mark.parametrize("student, fragment", [
    (student_nsp_pairs("last too"), "last sentence"),
    (student_nsp_pairs("always next"), "expected about 50%"),
    (student_nsp_pairs("inverted"), "is_next is inverted"),
    (student_nsp_pairs("any document"), "from another document"),
    (lambda documents, rng: None, "forget to `return`"),
])
def test_nsp_pairs_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_nsp_pairs, student, fragment)


def student_head(mistake=None):
    """A classification head as a student writes it, with one mistake (or none)."""
    class Head(torch.nn.Module):
        def __init__(self, hidden_size, num_labels, dropout=0.1):
            super().__init__()
            self.dense = torch.nn.Linear(hidden_size, hidden_size)
            self.dropout = torch.nn.Dropout(dropout)
            self.classifier = torch.nn.Linear(hidden_size, num_labels)

        def forward(self, h):
            cls = {"mean": h.mean(1), "last": h[:, -1]}.get(mistake, h[:, 0])
            pooled = self.dense(cls) if mistake == "no tanh" else cls if mistake == "no dense" else \
                torch.tanh(self.dense(cls))
            return self.classifier(pooled if mistake == "no dropout" else self.dropout(pooled))
    return Head


@pytest.mark.parametrize("student", [ClassificationHead, student_head()], ids=["course_lib", "student"])
def test_classification_head_check_accepts_a_right_head(student):
    checks.check_classification_head(student)


@pytest.mark.parametrize("mistake, fragment", [
    ("mean", "averages all positions"),
    ("last", "reads the last position"),
    ("no tanh", "tanh after dense is missing"),
    ("no dense", "pooler) is skipped"),
    ("no dropout", "is dropout applied"),
])
def test_classification_head_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_classification_head, student_head(mistake), fragment)
