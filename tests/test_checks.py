"""course_lib.checks: each check accepts a correct implementation and names each mistake it claims to detect."""
import math

import pytest
import torch

from course_lib import checks
from course_lib.attention import scaled_dot_product_attention
from course_lib.decoder import DecoderLayer
from course_lib.encoder import EncoderLayer, LayerNorm
from course_lib.multihead import MultiHeadAttention, merge_heads, split_heads
from course_lib.positional import TokenEmbedding, sinusoidal_encoding


def fails_with(check, student, *fragments):
    with pytest.raises(checks.CheckFailed) as error:
        check(student)
    for fragment in fragments:
        assert fragment in str(error.value), str(error.value)


# --- notebook 01_attention -------------------------------------------------------------

def test_attention_scores_check():
    checks.check_attention_scores(lambda q, k: q @ k.transpose(-2, -1))
    fails_with(checks.check_attention_scores, lambda q, k: k @ q.transpose(-2, -1), "k @ q^T")
    fails_with(checks.check_attention_scores, lambda q, k: q @ k.transpose(-2, -1) / 2, "don't scale here")
    fails_with(checks.check_attention_scores, lambda q, k: None, "forget to `return`")


def test_scaled_softmax_check():
    checks.check_scaled_softmax(lambda s, d: torch.softmax(s / math.sqrt(d), -1))
    fails_with(checks.check_scaled_softmax, lambda s, d: torch.softmax(s, -1), "missing the 1/sqrt(d_k)")
    fails_with(checks.check_scaled_softmax, lambda s, d: torch.softmax(s / math.sqrt(d), -2), "wrong axis")
    fails_with(checks.check_scaled_softmax, lambda s, d: torch.softmax(s / d, -1), "instead of sqrt(d_k)")


def test_apply_mask_check():
    checks.check_apply_mask(lambda s, m: s.masked_fill(~m, float("-inf")))
    checks.check_apply_mask(lambda s, m: s.masked_fill(~m, -1e9))  # very negative counts as -inf
    fails_with(checks.check_apply_mask, lambda s, m: s.masked_fill(m, float("-inf")), "wrong polarity")
    fails_with(checks.check_apply_mask, lambda s, m: s.masked_fill(~m, 0.0), "not 0")


def test_attention_check():
    checks.check_attention(scaled_dot_product_attention)

    def unscaled(q, k, v, mask=None):
        s = q @ k.transpose(-2, -1)
        w = (s if mask is None else s.masked_fill(~mask, float("-inf"))).softmax(-1)
        return w @ v, w
    fails_with(checks.check_attention, unscaled, "missing the 1/sqrt(d_k)")
    fails_with(checks.check_attention, lambda q, k, v, mask=None: scaled_dot_product_attention(
        q, k, v, None if mask is None else ~mask | ~mask.any(-1, keepdim=True)), "wrong polarity")
    fails_with(checks.check_attention, lambda q, k, v, mask=None: scaled_dot_product_attention(q, k, v, mask)[0],
               "tuple (output, weights)")


# --- notebook 02_multi_head_attention --------------------------------------------------

def test_split_and_merge_heads_checks():
    checks.check_split_heads(split_heads)
    checks.check_merge_heads(merge_heads)
    fails_with(checks.check_split_heads, lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "wrong order")
    fails_with(checks.check_merge_heads, lambda x: x.reshape(x.shape[0], x.shape[2], -1), "wrong order")
    fails_with(checks.check_split_heads, lambda x, h: x.view(*x.shape[:2], h, -1), "forgot the transpose")
    fails_with(checks.check_split_heads, lambda x, h: x.view(*x.shape[:2], -1, h).permute(0, 3, 1, 2),
               "contiguous block")
    fails_with(checks.check_merge_heads, lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
               "interleaved")
    fails_with(checks.check_merge_heads, lambda x: x.transpose(1, 2), "reshape (batch, seq, heads, d_head)")
    fails_with(checks.check_merge_heads, lambda x: None, "forget to `return`")


def test_multihead_check():
    checks.check_multihead(MultiHeadAttention)

    class NoOutputProjection(MultiHeadAttention):
        def forward(self, query, key=None, value=None, mask=None):
            out, w = super().forward(query, key, value, mask)
            return torch.nn.functional.linear(out - self.w_o.bias, torch.linalg.inv(self.w_o.weight)), w
    fails_with(checks.check_multihead, NoOutputProjection, "W^O")


class _Student(MultiHeadAttention):
    """A notebook-02 forward written out, with one mistake switched on by a subclass."""

    def heads(self, query, key, value, mask):
        q = split_heads(self.w_q(query), self.num_heads)
        k = split_heads(self.w_k(key), self.num_heads)
        v = split_heads(self.w_v(value), self.num_heads)
        return scaled_dot_product_attention(q, k, v, None if mask is None else mask.unsqueeze(1))

    def forward(self, query, key, value, mask=None):
        out, weights = self.heads(query, key, value, mask)
        return self.w_o(merge_heads(out)), weights


def test_multihead_check_names_each_mistake():
    checks.check_multihead(_Student)

    class MaskNotUnsqueezed(_Student):
        def heads(self, query, key, value, mask):
            return scaled_dot_product_attention(split_heads(self.w_q(query), self.num_heads),
                                                split_heads(self.w_k(key), self.num_heads),
                                                split_heads(self.w_v(value), self.num_heads), mask)

    class KeyValueSwapped(_Student):
        def heads(self, query, key, value, mask):
            self.w_k, self.w_v = self.w_v, self.w_k
            try:
                return super().heads(query, key, value, mask)
            finally:
                self.w_k, self.w_v = self.w_v, self.w_k

    class AveragedWeights(_Student):
        def forward(self, query, key, value, mask=None):
            out, weights = super().forward(query, key, value, mask)
            return out, weights.mean(1)

    class MergedWithoutTranspose(_Student):
        def forward(self, query, key, value, mask=None):
            out, weights = self.heads(query, key, value, mask)
            return self.w_o(out.reshape(query.shape)), weights

    class OnlyOutput(_Student):
        def forward(self, query, key, value, mask=None):
            return super().forward(query, key, value, mask)[0]

    fails_with(checks.check_multihead, MaskNotUnsqueezed, "mask.unsqueeze(1)")
    fails_with(checks.check_multihead, KeyValueSwapped, "each other's projection")
    fails_with(checks.check_multihead, AveragedWeights, "averaged over the heads")
    fails_with(checks.check_multihead, MergedWithoutTranspose, "merged in the wrong order")
    fails_with(checks.check_multihead, OnlyOutput, "tuple (output, weights)")


# --- notebook 03_positional_encoding ---------------------------------------------------

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


def test_sinusoidal_encoding_check():
    check = checks.check_sinusoidal_encoding
    check(sinusoidal_encoding)
    check(student_encoding)

    def integer_division(max_len, d_model):
        two_i = torch.arange(0, d_model, 2)
        angles = torch.arange(max_len).unsqueeze(1) / 10000 ** (two_i // d_model)
        return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)

    def exp_trick_without_log(max_len, d_model):
        angles = torch.arange(max_len).unsqueeze(1) * torch.exp(torch.arange(0, d_model, 2) * -(1.0 / d_model))
        return torch.stack([angles.sin(), angles.cos()], -1).flatten(1)

    fails_with(check, lambda n, d: student_encoding(n, d, swap=True), "sin and cos are swapped")
    fails_with(check, lambda n, d: student_encoding(n, d, pair_exponent=1), "i instead of 2i")
    fails_with(check, lambda n, d: student_encoding(n, d, pair_exponent=4), "doubled")
    fails_with(check, lambda n, d: student_encoding(n, d, cos_own_column=True), "same frequency")
    fails_with(check, integer_division, "frequency 1", "true division")
    fails_with(check, lambda n, d: student_encoding(n, d, base=1.0), "base 10000 missing")
    fails_with(check, exp_trick_without_log, "base 10000 is missing", "math.log(10000)")
    fails_with(check, lambda n, d: student_encoding(n, d, multiply=True), "divided")
    fails_with(check, lambda n, d: student_encoding(n, d, first=1), "positions start at 0")
    fails_with(check, lambda n, d: student_encoding(n, d, concat=True), "interleaved")
    fails_with(check, lambda n, d: student_encoding(n, d, transpose=True), "transposed")
    fails_with(check, lambda n, d: student_encoding(n, d, batch_dim=True), "without a batch dimension")
    fails_with(check, lambda n, d: torch.zeros(n, d, dtype=torch.long), "should return floats")
    fails_with(check, lambda n, d: None, "forget to `return`")
    fails_with(check, lambda n, d: student_encoding(n, d) + 0.01, "wrong values")


def test_embed_with_positions_check():
    check = checks.check_embed_with_positions

    def reference(tokens, embedding, pe):
        return embedding(tokens) * math.sqrt(embedding.embedding_dim) + pe[: tokens.shape[1]]
    check(reference)

    def via_course_lib(tokens, embedding, pe):
        module = TokenEmbedding(embedding.num_embeddings, embedding.embedding_dim)
        module.embedding = embedding
        return module(tokens) + pe[: tokens.shape[1]]
    check(via_course_lib)

    def variant(scale_tokens=1.0, scale_sum=1.0, scale_pe=1.0, positions=True):
        def embed(tokens, embedding, pe):
            return (embedding(tokens) * scale_tokens + positions * pe[: tokens.shape[1]] * scale_pe) * scale_sum
        return embed
    root = math.sqrt(8)
    fails_with(check, variant(), "not scaled")
    fails_with(check, variant(scale_sum=root), "you scaled the sum")
    fails_with(check, variant(scale_pe=root), "belongs to the token embeddings")
    fails_with(check, variant(scale_tokens=1 / root), "divided by sqrt(d_model)")
    fails_with(check, variant(scale_tokens=8.0), "instead of sqrt(d_model)")
    fails_with(check, variant(scale_tokens=root, positions=False), "positional encoding is missing")


# --- notebook 04_encoder ---------------------------------------------------------------

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


def test_layer_norm_check():
    checks.check_layer_norm(LayerNorm)
    checks.check_layer_norm(student_layer_norm())
    checks.check_layer_norm(torch.nn.LayerNorm)
    for mistake, fragment in [("seq axis", "wrong axis"), ("batch axis", "batch axis"),
                              ("unbiased", "unbiased variance"), ("eps outside", "eps belongs inside"),
                              ("ignores eps", "eps is ignored"), ("no gain", "gain self.weight is missing"),
                              ("no bias", "bias self.bias is missing"), ("no affine", "are missing"),
                              ("detached", "gradient"), ("init", "should start as torch.ones"),
                              ("plain tensor", "nn.Parameter")]:
        fails_with(checks.check_layer_norm, student_layer_norm(mistake), fragment)


def student_encoder_layer(mistake=None):
    """A post-LN encoder layer as a student writes it, with one mistake (or none)."""
    class StudentLayer(EncoderLayer):
        def forward(self, x, mask=None):
            attn = lambda h: self.self_attn(h, mask=None if mistake == "no mask" else mask)[0]
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


def test_encoder_layer_check():
    checks.check_encoder_layer(EncoderLayer)
    checks.check_encoder_layer(student_encoder_layer())
    for mistake, fragment in [("no mask", "mask is not used"), ("pre-LN", "pre-LN"), ("outline", "one-line form"),
                              ("ff on x", "output of the attention sub-layer"),
                              ("no attention residual", "around the self-attention is missing"),
                              ("no ff residual", "around the feed-forward network is missing"),
                              ("swapped norms", "swapped"), ("norm outside", "the norm wraps the sum"),
                              ("no dropout", "dropout is in the wrong place"),
                              ("dropout after the sum", "dropout is in the wrong place"),
                              ("forgot [0]", "take [0]")]:
        fails_with(checks.check_encoder_layer, student_encoder_layer(mistake), fragment)

    class OtherModules(torch.nn.Module):
        def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
            super().__init__()
            self.attn = MultiHeadAttention(d_model, num_heads)
            self.norm1 = self.norm2 = torch.nn.LayerNorm(d_model)
    fails_with(checks.check_encoder_layer, OtherModules, "keep the given __init__")


# --- notebook 05_decoder ---------------------------------------------------------------

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


def test_decoder_layer_check():
    checks.check_decoder_layer(DecoderLayer)
    checks.check_decoder_layer(student_decoder_layer())
    fails_with(checks.check_decoder_layer, student_decoder_layer("cross from x"), "keys and values from the decoder's own")
    fails_with(checks.check_decoder_layer, student_decoder_layer("q from memory"), "you swapped them")
    fails_with(checks.check_decoder_layer, student_decoder_layer("no causal mask"), "causal mask is missing")
    fails_with(checks.check_decoder_layer, student_decoder_layer("swapped masks"), "masks are swapped")
    fails_with(checks.check_decoder_layer, student_decoder_layer("cross first"), "wrong order")
    fails_with(checks.check_decoder_layer, student_decoder_layer("ff second"), "feed-forward network comes last")
    fails_with(checks.check_decoder_layer, student_decoder_layer("pre-LN"), "pre-LN")
    fails_with(checks.check_decoder_layer, student_decoder_layer("no residual"), "residual connection is missing")
    fails_with(checks.check_decoder_layer, student_decoder_layer("no memory mask"), "memory_mask is not used")
    fails_with(checks.check_decoder_layer, student_decoder_layer("no dropout2"), "through its dropout")
    fails_with(checks.check_decoder_layer, student_decoder_layer("dropout after the sum"), "through its dropout")

    class SameNormEverywhere(DecoderLayer):
        def forward(self, x, memory, tgt_mask=None, memory_mask=None):
            x = self.norm1(x + self.self_attn(x, mask=tgt_mask)[0])
            x = self.norm1(x + self.cross_attn(x, memory, memory, mask=memory_mask)[0])
            return self.norm1(x + self.ff(x))
    fails_with(checks.check_decoder_layer, SameNormEverywhere, "wrong values")

    class ReturnsTuple(DecoderLayer):
        def forward(self, *args):
            return super().forward(*args), None
    fails_with(checks.check_decoder_layer, ReturnsTuple, "should be a torch.Tensor, got tuple")

    class OtherModules(torch.nn.Module):
        def __init__(self, d_model, num_heads, d_ff, dropout=0.1):
            super().__init__()
            self.attn = MultiHeadAttention(d_model, num_heads)
            self.norm1 = self.norm2 = self.norm3 = torch.nn.LayerNorm(d_model)
    fails_with(checks.check_decoder_layer, OtherModules, "keep the given __init__")


def reference_is_causal(fn, x, atol=1e-6):
    reference = fn(x)
    for t in range(x.shape[1] - 1):
        changed = x.clone()
        changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])
        if not torch.allclose(fn(changed)[:, :t + 1], reference[:, :t + 1], atol=atol):
            return False
    return True


def test_is_causal_check():
    checks.check_is_causal(reference_is_causal)
    checks.check_is_causal(lambda fn, x: torch.tensor(reference_is_causal(fn, x)))  # a 0-d bool tensor will do

    def whole_output(fn, x):
        changed = x.clone()
        changed[:, 1:] += 1.0
        return torch.allclose(fn(changed), fn(x))
    fails_with(checks.check_is_causal, whole_output, "said False for a causal function")

    def including_t(fn, x):
        return all(torch.allclose(fn(x)[:, :t + 1], fn(torch.cat([x[:, :t], x[:, t:] + 1], 1))[:, :t + 1])
                   for t in range(x.shape[1]))
    fails_with(checks.check_is_causal, including_t, "output t may depend on x[t] itself")

    def excluding_t(fn, x):
        return all(torch.allclose(fn(x)[:, :t], fn(torch.cat([x[:, :t + 1], x[:, t + 1:] + 1], 1))[:, :t])
                   for t in range(x.shape[1]))
    fails_with(checks.check_is_causal, excluding_t, "leak from the next token")

    def last_token_only(fn, x):
        changed = x.clone()
        changed[:, -1] += 1.0
        return torch.allclose(fn(changed)[:, :-1], fn(x)[:, :-1])
    fails_with(checks.check_is_causal, last_token_only, "not only the last one")

    def in_place(fn, x):
        reference = fn(x).clone()
        x[:, 1:] += 1.0
        return torch.allclose(fn(x)[:, :1], reference[:, :1])
    fails_with(checks.check_is_causal, in_place, "in place")
    fails_with(checks.check_is_causal, lambda fn, x: None, "forget to `return`")


# --- notebook 08_gpt -------------------------------------------------------------------

def test_next_token_probs_check():
    from course_lib.generation import top_k_filter

    def probs(logits, t, k, scale=lambda l, t: l / t, keep=None):
        logits = scale(logits, t)
        return (top_k_filter(logits, k) if k is not None else logits).softmax(-1)
    checks.check_next_token_probs(probs)
    check = checks.check_next_token_probs
    fails_with(check, lambda l, t, k: probs(l, t, k, scale=lambda l, t: l * t), "multiplies")
    fails_with(check, lambda l, t, k: probs(l, 1.0, k), "temperature is missing")
    fails_with(check, lambda l, t, k: top_k_filter(l / t, k) if k else l / t, "not the logits")
    def smallest(l, t, k):
        if k is None:
            return probs(l, t, k)
        keep = l <= l.topk(k, dim=-1, largest=False).values[..., -1:]
        return (l / t).masked_fill(~keep, float("-inf")).softmax(-1)
    fails_with(check, smallest, "k smallest")
    fails_with(check, lambda l, t, k: probs(l, t, k + 1 if k else None), "exactly the top")
    fails_with(check, lambda l, t, k: (l / t).softmax(-1) * torch.isfinite(top_k_filter(l, k or l.shape[-1])),
               "do not sum to 1")
    fails_with(check, lambda l, t, k: (l / t).softmax(-1), "top-k is missing")
    fails_with(check, lambda l, t, k: probs(l, t, k or 4), "top_k=None")


def test_top_p_filter_check():
    from course_lib.generation import top_p_filter

    def variant(logits, p, descending=True, strict=False, unsort=True, axis=-1, fill=float("-inf")):
        sorted_logits, order = logits.sort(dim=-1, descending=descending)
        probs = sorted_logits.softmax(axis)
        cumulative = probs.cumsum(-1)
        remove = cumulative > p if strict else cumulative - probs >= p
        if not unsort:
            return sorted_logits.masked_fill(remove, fill)
        return logits.masked_fill(remove.scatter(-1, order, remove), fill)
    checks.check_top_p_filter(top_p_filter)
    checks.check_top_p_filter(variant)
    check = checks.check_top_p_filter
    fails_with(check, lambda l, p: variant(l, p, strict=True), "takes the total past p")
    fails_with(check, lambda l, p: variant(l, p, descending=False), "descending=True")
    fails_with(check, lambda l, p: variant(l, p, unsort=False), "original token order")
    fails_with(check, lambda l, p: l.softmax(-1).masked_fill(torch.isinf(top_p_filter(l, p)), 0.0), "not probabilities")
    fails_with(check, lambda l, p: variant(l, p, fill=0.0), "not 0")
    fails_with(check, lambda l, p: variant(l, p, axis=0), "last axis")
    fails_with(check, lambda l, p: variant(l, p) if p > 0.01 else torch.full_like(l, float("-inf")), "always stay")


def test_attend_with_cache_check():
    import torch.nn.functional as F

    def attend(attn, x, past_k, past_v, order="past first", mask=None, w_o=True, use_past=True):
        q, k, v = (split_heads(w(x), attn.num_heads) for w in (attn.w_q, attn.w_k, attn.w_v))
        if use_past:
            pair = ((past_k, k), (past_v, v)) if order == "past first" else ((k, past_k), (v, past_v))
            k, v = torch.cat(pair[0], dim=2), torch.cat(pair[1], dim=2)
        out = merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=mask == "causal"))
        return (attn.w_o(out) if w_o else out), k, v
    checks.check_attend_with_cache(attend)
    check = checks.check_attend_with_cache
    fails_with(check, lambda *a: attend(*a, order="new first"), "goes after the cached ones")
    fails_with(check, lambda *a: attend(*a, mask="causal"), "hides the cache")
    fails_with(check, lambda *a: attend(*a, w_o=False), "W^O")
    fails_with(check, lambda attn, x, pk, pv: (attend(attn, x, pk, pv, use_past=False)[0],) + attend(attn, x, pk, pv)[1:],
               "only to itself")
    fails_with(check, lambda attn, x, pk, pv: attend(attn, x, pk, pv, use_past=False), "whole cache")
    fails_with(check, lambda attn, x, pk, pv: attend(attn, x, pk, pv)[:2], "tuple (out, k, v)")


# --- notebook 07_bert ------------------------------------------------------------------

def student_mask_tokens(mistake=None):
    from course_lib.bert import mask_tokens

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


def test_mask_tokens_check():
    checks.check_mask_tokens(student_mask_tokens())
    fails_with(checks.check_mask_tokens, student_mask_tokens("in place"), "in place")
    fails_with(checks.check_mask_tokens, student_mask_tokens("specials"), "special_mask is True")
    fails_with(checks.check_mask_tokens, student_mask_tokens("labels copied"), "-100")
    fails_with(checks.check_mask_tokens, student_mask_tokens("all masked"), "every chosen token became [MASK]")
    fails_with(checks.check_mask_tokens, student_mask_tokens("labels are inputs"), "original token")
    fails_with(checks.check_mask_tokens, student_mask_tokens("rate"), "expected about 15%")
    fails_with(checks.check_mask_tokens, student_mask_tokens("no random"), "stayed as they were")
    fails_with(checks.check_mask_tokens, student_mask_tokens("none"), "forget to `return`")


def student_nsp_pairs(mistake=None):
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


def test_nsp_pairs_check():
    from course_lib.bert import make_nsp_pairs
    checks.check_nsp_pairs(make_nsp_pairs)
    checks.check_nsp_pairs(student_nsp_pairs())
    fails_with(checks.check_nsp_pairs, student_nsp_pairs("last too"), "last sentence")
    fails_with(checks.check_nsp_pairs, student_nsp_pairs("always next"), "expected about 50%")
    fails_with(checks.check_nsp_pairs, student_nsp_pairs("inverted"), "is_next=True but B is not")
    fails_with(checks.check_nsp_pairs, student_nsp_pairs("any document"), "from another document")
    fails_with(checks.check_nsp_pairs, lambda documents, rng: None, "forget to `return`")


def student_head(mistake=None):
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


def test_classification_head_check():
    from course_lib.bert import ClassificationHead
    checks.check_classification_head(ClassificationHead)
    checks.check_classification_head(student_head())
    fails_with(checks.check_classification_head, student_head("mean"), "averages all positions")
    fails_with(checks.check_classification_head, student_head("last"), "reads the last position")
    fails_with(checks.check_classification_head, student_head("no tanh"), "tanh after dense is missing")
    fails_with(checks.check_classification_head, student_head("no dense"), "pooler) is skipped")
    fails_with(checks.check_classification_head, student_head("no dropout"), "is dropout applied")


def test_choice_check():
    checks.check_choice(2, (1, 2, 3))
    with pytest.raises(checks.CheckFailed, match="one of 1, 2, 3"):
        checks.check_choice("2", (1, 2, 3))


# --- notebook 06_training --------------------------------------------------------------

def test_label_smoothing_loss_check():
    from course_lib.training import LabelSmoothingLoss

    reference = lambda logits, target, smoothing, pad_id: LabelSmoothingLoss(smoothing, pad_id)(logits, target)  # noqa: E731
    checks.check_label_smoothing_loss(reference)

    def smoothed(logits, target, smoothing, pad_id, spread=None, mean_over_all=False, right_share=True):
        vocab = logits.shape[-1]
        one_hot = torch.nn.functional.one_hot(target, vocab).to(logits.dtype)
        if spread == "others":
            q = (1 - smoothing) * one_hot + smoothing / (vocab - 1) * (1 - one_hot)
        elif not right_share:
            q = (1 - smoothing) * one_hot + smoothing / vocab * (1 - one_hot)
        else:
            q = (1 - smoothing) * one_hot + smoothing / vocab
        loss = -(q * logits.log_softmax(-1)).sum(-1)
        return loss.mean() if mean_over_all else loss[target != pad_id].mean()
    fails_with(checks.check_label_smoothing_loss, lambda *a: smoothed(*a, mean_over_all=True), "non-pad tokens only")
    fails_with(checks.check_label_smoothing_loss, lambda *a: smoothed(*a, spread="others"), "V - 1 other tokens")
    fails_with(checks.check_label_smoothing_loss, lambda *a: smoothed(*a, right_share=False), "its share")
    fails_with(checks.check_label_smoothing_loss, lambda lg, t, s, p: torch.nn.functional.cross_entropy(
        lg, t, ignore_index=p), "no smoothing")
    fails_with(checks.check_label_smoothing_loss, lambda lg, t, s, p: smoothed(lg, t, s, p) * (t != p).sum(),
               "sum over tokens")
    fails_with(checks.check_label_smoothing_loss, lambda *a: None, "forget to `return`")


def test_rate_check():
    from course_lib.training import transformer_lr

    checks.check_rate(lambda step, d_model, warmup: transformer_lr(step, d_model, warmup))
    fails_with(checks.check_rate, lambda s, d, w: d ** -0.5 * min(s ** -0.5, s * w ** -1.5), "divides by zero")
    fails_with(checks.check_rate, lambda s, d, w: d ** -0.5 * max(max(s, 1) ** -0.5, max(s, 1) * w ** -1.5),
               "max where the formula has min")
    fails_with(checks.check_rate, lambda s, d, w: min(max(s, 1) ** -0.5, max(s, 1) * w ** -1.5), "d_model^-0.5")
    fails_with(checks.check_rate, lambda s, d, w: d ** -0.5 * min(max(s, 1) ** -0.5, w * max(s, 1) ** -1.5),
               "warmup^-1.5 times step")
    fails_with(checks.check_rate, lambda s, d, w: 0.0 if s == 0 else transformer_lr(s, d, w), "same rate as step 1")
    fails_with(checks.check_rate, lambda s, d, w: None, "forget to `return`")


def _train_step(model, batch, loss_fn, optimizer, scheduler, max_norm, zero_grad=True, clip="before",
                shift=True, step_scheduler=True, train=True, item=True):
    if train:
        model.train()
    if zero_grad:
        optimizer.zero_grad()
    logits = model(batch.src, batch.tgt_in if shift else batch.tgt_out, batch.src_mask, batch.tgt_mask)
    loss = loss_fn(logits.reshape(-1, logits.shape[-1]), batch.tgt_out.reshape(-1))
    loss.backward()
    if clip == "before":
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    if clip == "after":
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if step_scheduler:
        scheduler.step()
    return loss.item() if item else loss


def test_train_step_check():
    from course_lib import training

    checks.check_train_step(_train_step)
    checks.check_train_step(lambda *a: training.train_step(*a)[0])  # course_lib's, which also returns accuracy
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, zero_grad=False), "zero_grad")
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, clip=None), "not clipped")
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, clip="after"), "before optimizer.step()")
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, shift=False), "batch.tgt_in")
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, step_scheduler=False), "scheduler.step()")
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, train=False), "model.train()")
    fails_with(checks.check_train_step, lambda *a: _train_step(*a, item=False), "loss.item()")
    fails_with(checks.check_train_step, lambda *a: None, "forget to `return`")


def test_greedy_decode_check():
    from course_lib.generation import greedy_decode

    checks.check_greedy_decode(lambda model, src, max_len, bos, eos, pad: greedy_decode(
        model, src, max_len, bos_id=bos, eos_id=eos, pad_id=pad))
    variants = {"causal": "causal mask", "last": "last position", "stop": "fill it with pad_id",
                "src_padding": "source padding"}
    for flag, fragment in variants.items():
        fails_with(checks.check_greedy_decode, lambda *a, flag=flag: checks._greedy_variant(*a, **{flag: False}),
                   fragment)
    fails_with(checks.check_greedy_decode, lambda *a: checks._greedy_variant(*a)[:, 1:], "<bos>")
    fails_with(checks.check_greedy_decode, lambda *a: checks._greedy_variant(*a).float(), "torch.long")


# --- notebook 09_efficient_attention ---------------------------------------------------

def _window_mask(keep, causal_part=lambda off: off >= 0, dtype=torch.bool):
    """A sliding_window_mask whose window test is ``keep(offset, window)``, offset = i - j."""
    def sliding_window_mask(seq_len, window, causal=False):
        pos = torch.arange(seq_len)
        offset = pos[:, None] - pos[None, :]
        mask = keep(offset, window)
        return (mask & causal_part(offset) if causal else mask).to(dtype)
    return sliding_window_mask


def test_sliding_window_mask_check():
    from course_lib.efficient import sliding_window_mask
    checks.check_sliding_window_mask(sliding_window_mask)
    checks.check_sliding_window_mask(_window_mask(lambda off, w: (off <= w) & (off >= -w)))
    check = checks.check_sliding_window_mask
    fails_with(check, _window_mask(lambda off, w: off.abs() < w), "off by one", "< window")
    fails_with(check, _window_mask(lambda off, w: off.abs() <= w + 1), "off by one", "too many")
    fails_with(check, lambda s, w, causal=False: ~sliding_window_mask(s, w, causal), "wrong polarity")
    fails_with(check, lambda s, w, causal=False: sliding_window_mask(s, w), "causal=True is ignored")
    fails_with(check, _window_mask(lambda off, w: off.abs() <= w, lambda off: off <= 0), "hides the past")
    fails_with(check, lambda s, w, causal=False: torch.ones(s, s, dtype=torch.bool).tril() if causal
               else sliding_window_mask(s, w), "window still applies")
    fails_with(check, lambda s, w, causal=False: sliding_window_mask(s, w, True), "both ways")
    fails_with(check, _window_mask(lambda off, w: (off.abs() <= w) & (off != 0)), "diagonal is missing")
    fails_with(check, _window_mask(lambda off, w: off.abs() <= w, dtype=torch.float32), "torch.bool")
    fails_with(check, lambda s, w, causal=False: None, "forget to `return`")


def _linear(phi_q=None, phi_k=None, normalize=True, causal_numerator=True, causal_normalizer=True):
    """A linear_attention with the given pieces; the defaults make it right."""
    import torch.nn.functional as F
    right = lambda x: F.elu(x) + 1
    phi_q, phi_k = phi_q or right, phi_k or right

    def linear_attention(q, k, v, causal=False):
        fq, fk = phi_q(q), phi_k(k)
        if causal and causal_numerator:
            state = torch.einsum("...jd,...je->...jde", fk, v).cumsum(-3)
            num = torch.einsum("...id,...ide->...ie", fq, state)
        else:
            num = fq @ (fk.transpose(-2, -1) @ v)
        z = fk.cumsum(-2) if causal and causal_normalizer else fk.sum(-2, keepdim=True)
        return num / (fq * z).sum(-1, keepdim=True) if normalize else num
    return linear_attention


def test_linear_attention_check():
    import torch.nn.functional as F
    from course_lib.efficient import linear_attention
    checks.check_linear_attention(linear_attention)
    checks.check_linear_attention(_linear())
    check = checks.check_linear_attention
    identity = lambda x: x
    fails_with(check, _linear(identity, identity), "feature map is missing")
    fails_with(check, _linear(F.elu, F.elu), "the + 1 is missing")
    fails_with(check, _linear(phi_k=identity), "to the keys too")
    fails_with(check, _linear(phi_q=identity), "to the queries too")
    fails_with(check, _linear(torch.exp, torch.exp), "not exp(x)")
    fails_with(check, _linear(phi_q=lambda x: F.elu(x / 2) + 1), "no 1/sqrt(d_k)")
    fails_with(check, _linear(normalize=False), "normalizer is missing")
    fails_with(check, _linear(causal_numerator=False, causal_normalizer=False), "causal=True is ignored")
    fails_with(check, _linear(causal_normalizer=False), "running sum too")
    fails_with(check, lambda q, k, v, causal=False: linear_attention(q, k, v, causal=True), "only j <= i")
    fails_with(check, lambda q, k, v, causal=False: scaled_dot_product_attention(
        q, k, v, torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril() if causal else None)[0],
        "this is softmax attention")
    fails_with(check, lambda q, k, v, causal=False: None, "forget to `return`")
