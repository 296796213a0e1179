"""course_lib.checks.nb04_encoder: each check accepts a correct answer and names each mistake it claims to detect."""
import pytest
import torch
from student_copies import student_copy

from course_lib import checks, encoder
from course_lib.multihead import MultiHeadAttention

EncoderLayer, LayerNorm = student_copy(encoder.EncoderLayer), student_copy(encoder.LayerNorm)


def student_layer_norm(mistake=None):
    """A LayerNorm as a student writes it, with one mistake (or none)."""
    class StudentLayerNorm(torch.nn.Module):
        def __init__(self, d_model, eps=1e-5):
            super().__init__()
            self.eps = 1e-5 if mistake == "ignores eps" else eps
            self.weight = torch.nn.Parameter(torch.ones(d_model) * (2 if mistake == "init" else 1))
            zeros = torch.zeros(d_model)
            self.bias = zeros if mistake == "plain tensor" else torch.nn.Parameter(zeros)

        def forward(self, x):
            dim = {"seq axis": -2, "batch axis": 0}.get(mistake, -1)
            mean = x.mean(dim=dim, keepdim=True)
            var = x.var(dim=dim, unbiased=mistake == "unbiased", keepdim=True)
            if mistake == "detached":
                mean, var = mean.detach(), var.detach()
            std = var.sqrt() + self.eps if mistake == "eps outside" else torch.sqrt(var + self.eps)
            out = (x - mean) / std
            if mistake == "no gain":
                return out + self.bias
            if mistake == "no bias":
                return out * self.weight
            if mistake == "no affine":
                return out
            return out * self.weight + self.bias
    return StudentLayerNorm


@pytest.mark.parametrize("student", [LayerNorm, student_layer_norm()], ids=["course_lib", "student"])
def test_layer_norm_check_accepts_a_right_layer_norm(student):
    checks.check_layer_norm(student)


@pytest.mark.parametrize("mistake, fragment", [
    ("seq axis", "wrong axis"), ("batch axis", "batch axis"), ("unbiased", "unbiased variance"),
    ("eps outside", "eps belongs inside"), ("ignores eps", "eps is ignored"),
    ("no gain", "gain self.weight is missing"), ("no bias", "bias self.bias is missing"),
    ("no affine", "are missing"), ("detached", "gradient"), ("init", "should start as torch.ones"),
    ("plain tensor", "nn.Parameter"),
])
def test_layer_norm_check_names_the_mistake(fails_with, mistake, fragment):
    fails_with(checks.check_layer_norm, student_layer_norm(mistake), fragment)


def student_encoder_layer(mistake=None):
    """A post-LN encoder layer as a student writes it, with one mistake (or none)."""
    class StudentLayer(EncoderLayer):
        def forward(self, x, mask=None):
            def attn(h):
                return self.self_attn(h, mask=None if mistake == "no mask" else mask)[0]

            if mistake == "pre-LN":
                x = x + self.dropout1(attn(self.norm1(x)))
                return x + self.dropout2(self.ff(self.norm2(x)))
            if mistake == "outline":
                return self.norm1(x + self.dropout1(attn(x)) + self.dropout2(self.ff(x)))
            if mistake == "forgot [0]":
                return self.norm1(x + self.self_attn(x, mask=mask))
            n1, n2 = (self.norm2, self.norm1) if mistake == "swapped norms" else (self.norm1, self.norm2)
            if mistake == "norm outside":
                h = x + n1(self.dropout1(attn(x)))
                return h + n2(self.dropout2(self.ff(h)))
            if mistake == "dropout after the sum":
                h = n1(self.dropout1(x + attn(x)))
            elif mistake == "no attention residual":
                h = n1(self.dropout1(attn(x)))
            else:
                h = n1(x + (attn(x) if mistake == "no dropout" else self.dropout1(attn(x))))
            if mistake == "ff on x":
                return n2(h + self.dropout2(self.ff(x)))
            if mistake == "no ff residual":
                return n2(self.dropout2(self.ff(h)))
            return n2(h + self.dropout2(self.ff(h)))
    return StudentLayer


class OtherModules(torch.nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.norm1 = self.norm2 = torch.nn.LayerNorm(d_model)


@pytest.mark.parametrize("student", [EncoderLayer, student_encoder_layer()], ids=["course_lib", "student"])
def test_encoder_layer_check_accepts_a_post_ln_layer(student):
    checks.check_encoder_layer(student)


@pytest.mark.parametrize("student, fragment", [
    (student_encoder_layer("no mask"), "mask is not used"),
    (student_encoder_layer("pre-LN"), "pre-LN"),
    (student_encoder_layer("outline"), "one-line form"),
    (student_encoder_layer("ff on x"), "output of the attention sub-layer"),
    (student_encoder_layer("no attention residual"), "around the self-attention is missing"),
    (student_encoder_layer("no ff residual"), "around the feed-forward network is missing"),
    (student_encoder_layer("swapped norms"), "swapped"),
    (student_encoder_layer("norm outside"), "the norm wraps the sum"),
    (student_encoder_layer("no dropout"), "dropout is in the wrong place"),
    (student_encoder_layer("dropout after the sum"), "dropout is in the wrong place"),
    (student_encoder_layer("forgot [0]"), "take [0]"),
    (OtherModules, "keep the given __init__"),
])
def test_encoder_layer_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_encoder_layer, student, fragment)
