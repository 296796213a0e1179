"""course_lib.checks.nb03_positional_encoding: each check accepts a correct answer and names each mistake it
claims to detect."""
import math

import pytest
import torch
from student_copies import student_copy

from course_lib import checks, positional

TokenEmbedding, sinusoidal_encoding = map(student_copy, (positional.TokenEmbedding, positional.sinusoidal_encoding))

ROOT = math.sqrt(8)  # sqrt(d_model) of the check's embedding


def student_encoding(max_len, d_model, swap=False, pair_exponent=2, cos_own_column=False, base=10000.0,
                     multiply=False, first=0, concat=False, transpose=False, batch_dim=False):
    """A loop-by-loop sinusoidal table as a student would write it; each flag is one mistake."""
    pe = torch.zeros(max_len, d_model)
    for pos in range(first, first + max_len):
        for i in range(d_model // 2):
            for column, fn in ((2 * i, math.sin), (2 * i + 1, math.cos)):
                k = column if cos_own_column else pair_exponent * i
                angle = pos * base ** (k / d_model) if multiply else pos / base ** (k / d_model)
                if swap:
                    fn = math.cos if fn is math.sin else math.sin
                target = (i if fn is math.sin else d_model // 2 + i) if concat else column
                pe[pos - first, target] = fn(angle)
    pe = pe.T if transpose else pe
    return pe.unsqueeze(0) if batch_dim else pe


def integer_division(max_len, d_model):
    two_i = torch.arange(0, d_model, 2)
    angles = torch.arange(max_len).unsqueeze(1) / 10000 ** (two_i // d_model)
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)


def exp_trick_without_log(max_len, d_model):
    angles = torch.arange(max_len).unsqueeze(1) * torch.exp(torch.arange(0, d_model, 2) * -(1.0 / d_model))
    return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)


@pytest.mark.parametrize("student", [sinusoidal_encoding, student_encoding])
def test_sinusoidal_encoding_check_accepts_the_table(student):
    checks.check_sinusoidal_encoding(student)


@pytest.mark.parametrize("student, fragments", [
    (lambda n, d: student_encoding(n, d, swap=True), ["sin and cos are swapped"]),
    (lambda n, d: student_encoding(n, d, pair_exponent=1), ["i instead of 2i"]),
    (lambda n, d: student_encoding(n, d, pair_exponent=4), ["doubled"]),
    (lambda n, d: student_encoding(n, d, cos_own_column=True), ["same frequency"]),
    (integer_division, ["frequency 1", "true division"]),
    (lambda n, d: student_encoding(n, d, base=1.0), ["base 10000 missing"]),
    (exp_trick_without_log, ["base 10000 is missing", "math.log(10000)"]),
    (lambda n, d: student_encoding(n, d, multiply=True), ["divided"]),
    (lambda n, d: student_encoding(n, d, first=1), ["positions start at 0"]),
    (lambda n, d: student_encoding(n, d, concat=True), ["interleaved"]),
    (lambda n, d: student_encoding(n, d, transpose=True), ["transposed"]),
    (lambda n, d: student_encoding(n, d, batch_dim=True), ["without a batch dimension"]),
    (lambda n, d: torch.zeros(n, d, dtype=torch.long), ["should return floats"]),
    (lambda n, d: None, ["forget to `return`"]),
    (lambda n, d: student_encoding(n, d) + 0.01, ["wrong values"]),
])
def test_sinusoidal_encoding_check_names_the_mistake(fails_with, student, fragments):
    fails_with(checks.check_sinusoidal_encoding, student, *fragments)


def reference_embed(tokens, embedding, pe):
    return embedding(tokens) * math.sqrt(embedding.embedding_dim) + pe[: tokens.shape[1]]


def via_course_lib(tokens, embedding, pe):
    module = TokenEmbedding(embedding.num_embeddings, embedding.embedding_dim)
    module.embedding = embedding
    return module(tokens) + pe[: tokens.shape[1]]


def embed_variant(scale_tokens=1.0, scale_sum=1.0, scale_pe=1.0, positions=True):
    def embed(tokens, embedding, pe):
        return (embedding(tokens) * scale_tokens + positions * pe[: tokens.shape[1]] * scale_pe) * scale_sum
    return embed


@pytest.mark.parametrize("student", [reference_embed, via_course_lib])
def test_embed_with_positions_check_accepts_scaled_tokens_plus_positions(student):
    checks.check_embed_with_positions(student)


@pytest.mark.parametrize("student, fragment", [
    (embed_variant(), "not scaled"),
    (embed_variant(scale_sum=ROOT), "you scaled the sum"),
    (embed_variant(scale_pe=ROOT), "belongs to the token embeddings"),
    (embed_variant(scale_tokens=1 / ROOT), "divided by sqrt(d_model)"),
    (embed_variant(scale_tokens=8.0), "instead of sqrt(d_model)"),
    (embed_variant(scale_tokens=ROOT, positions=False), "positional encoding is missing"),
])
def test_embed_with_positions_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_embed_with_positions, student, fragment)
