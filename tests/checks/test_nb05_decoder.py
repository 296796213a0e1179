"""course_lib.checks.nb05_decoder: each check accepts a correct answer and names each mistake it claims to detect."""
import pytest
import torch
from student_copies import student_copy

from course_lib import checks, decoder
from course_lib.multihead import MultiHeadAttention

DecoderLayer = student_copy(decoder.DecoderLayer)


def student_decoder_layer(mistake=None):
    """A post-LN decoder layer as a student writes it, with one mistake (or none)."""
    class StudentLayer(DecoderLayer):
        def forward(self, x, memory, tgt_mask=None, memory_mask=None):
            def self_block(h):
                mask = {"no causal mask": None, "swapped masks": memory_mask}.get(mistake, tgt_mask)
                return self.self_attn(h, mask=mask)[0]

            def cross_block(h):
                q, kv = {"cross from x": (h, h), "q from memory": (memory, h)}.get(mistake, (h, memory))
                mask = {"swapped masks": tgt_mask, "no memory mask": None}.get(mistake, memory_mask)
                return self.cross_attn(q, kv, kv, mask=mask)[0]

            dropouts = {"s": self.dropout1, "c": self.dropout2, "f": self.dropout3}
            if mistake == "no dropout2":
                dropouts["c"] = torch.nn.Identity()
            blocks = {"s": (self_block, self.norm1), "c": (cross_block, self.norm2), "f": (self.ff, self.norm3)}
            order = {"cross first": "csf", "ff second": "sfc"}.get(mistake, "scf")
            for kind in order:
                block, norm = blocks[kind]
                if mistake == "pre-LN":
                    x = x + dropouts[kind](block(norm(x)))
                elif mistake == "no residual":
                    x = norm(dropouts[kind](block(x)))
                elif mistake == "dropout after the sum":
                    x = norm(dropouts[kind](x + block(x)))
                else:
                    x = norm(x + dropouts[kind](block(x)))
            return x
    return StudentLayer


class SameNormEverywhere(DecoderLayer):
    def forward(self, x, memory, tgt_mask=None, memory_mask=None):
        x = self.norm1(x + self.self_attn(x, mask=tgt_mask)[0])
        x = self.norm1(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
        return self.norm1(x + self.ff(x))


class ReturnsTuple(DecoderLayer):
    def forward(self, *args):
        return super().forward(*args), None


class OtherModules(torch.nn.Module):
    def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, num_heads)
        self.norm1 = self.norm2 = self.norm3 = torch.nn.LayerNorm(d_model)


@pytest.mark.parametrize("student", [DecoderLayer, student_decoder_layer()], ids=["course_lib", "student"])
def test_decoder_layer_check_accepts_a_post_ln_layer(student):
    checks.check_decoder_layer(student)


@pytest.mark.parametrize("student, fragment", [
    (student_decoder_layer("cross from x"), "keys and values from the decoder's own"),
    (student_decoder_layer("q from memory"), "you swapped them"),
    (student_decoder_layer("no causal mask"), "causal mask is missing"),
    (student_decoder_layer("swapped masks"), "masks are swapped"),
    (student_decoder_layer("cross first"), "wrong order"),
    (student_decoder_layer("ff second"), "feed-forward network comes last"),
    (student_decoder_layer("pre-LN"), "pre-LN"),
    (student_decoder_layer("no residual"), "residual connection is missing"),
    (student_decoder_layer("no memory mask"), "memory_mask is not used"),
    (student_decoder_layer("no dropout2"), "through its dropout"),
    (student_decoder_layer("dropout after the sum"), "through its dropout"),
    (SameNormEverywhere, "wrong values"),
    (ReturnsTuple, "should be a torch.Tensor, got tuple"),
    (OtherModules, "keep the given __init__"),
])
def test_decoder_layer_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_decoder_layer, student, fragment)


def reference_is_causal(fn, x, atol=1e-6):
    reference = fn(x)
    for t in range(x.shape[1] - 1):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        if not torch.allclose(fn(changed)[:, :t + 1], reference[:, :t + 1], atol=atol):
            return False
    return True


def whole_output(fn, x):
    changed = x.clone()
    changed[:, 1:] += 1.0
    return torch.allclose(fn(changed), fn(x))


def including_t(fn, x):
    return all(torch.allclose(fn(x)[:, :t + 1], fn(torch.cat([x[:, :t], x[:, t:] + 1], 1))[:, :t + 1])
               for t in range(x.shape[1]))


def excluding_t(fn, x):
    return all(torch.allclose(fn(x)[:, :t], fn(torch.cat([x[:, :t + 1], x[:, t + 1:] + 1], 1))[:, :t])
               for t in range(x.shape[1]))


def last_token_only(fn, x):
    changed = x.clone()
    changed[:, -1] += 1.0
    return torch.allclose(fn(changed)[:, :-1], fn(x)[:, :-1])


def in_place(fn, x):
    reference = fn(x).clone()
    x[:, 1:] += 1.0
    return torch.allclose(fn(x)[:, :1], reference[:, :1])


@pytest.mark.parametrize("student", [
    reference_is_causal,
    lambda fn, x: torch.tensor(reference_is_causal(fn, x)),  # a 0-d bool tensor will do
], ids=["bool", "0-d tensor"])
def test_is_causal_check_accepts_a_right_test(student):
    checks.check_is_causal(student)


@pytest.mark.parametrize("student, fragment", [
    (whole_output, "said False for a causal function"),
    (including_t, "output t may depend on x[t] itself"),
    (excluding_t, "leak from the next token"),
    (last_token_only, "not only the last one"),
    (in_place, "in place"),
    (lambda fn, x: None, "forget to `return`"),
])
def test_is_causal_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_is_causal, student, fragment)
