"""course_lib.checks.nb02_multi_head_attention: each check accepts a correct answer and names each mistake it
claims to detect."""
import pytest
import torch
from student_copies import student_copy

from course_lib import checks, multihead
from course_lib.attention import scaled_dot_product_attention

MultiHeadAttention, merge_heads, split_heads = map(student_copy, (multihead.MultiHeadAttention, multihead.merge_heads,
                                                                 multihead.split_heads))


def test_split_and_merge_heads_checks_accept_course_lib():
    checks.check_split_heads(split_heads)
    checks.check_merge_heads(merge_heads)


@pytest.mark.parametrize("student, fragment", [
    (lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1), "wrong order"),
    (lambda x, h: x.view(*x.shape[:2], h, -1), "forgot the transpose"),
    (lambda x, h: x.view(*x.shape[:2], -1, h).permute(0, 3, 1, 2), "contiguous block"),
])
def test_split_heads_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_split_heads, student, fragment)


@pytest.mark.parametrize("student, fragment", [
    (lambda x: x.reshape(x.shape[0], x.shape[2], -1), "wrong order"),
    (lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1), "interleaved"),
    (lambda x: x.transpose(1, 2), "reshape (batch, seq, heads, d_head)"),
    (lambda x: None, "forget to `return`"),
])
def test_merge_heads_check_names_the_mistake(fails_with, student, fragment):
    fails_with(checks.check_merge_heads, student, fragment)


class Student(MultiHeadAttention):
    """A notebook-02 forward written out, with one mistake switched on by a subclass."""

    def heads(self, query, key, value, mask):
        q = split_heads(self.w_q(query), self.num_heads)
        k = split_heads(self.w_k(key), self.num_heads)
        v = split_heads(self.w_v(value), self.num_heads)
        return scaled_dot_product_attention(q, k, v, None if mask is None else mask.unsqueeze(1))

    def forward(self, query, key, value, mask=None):
        out, weights = self.heads(query, key, value, mask)
        return self.w_o(merge_heads(out)), weights


class NoOutputProjection(MultiHeadAttention):
    def forward(self, query, key=None, value=None, mask=None):
        out, w = super().forward(query, key, value, mask)
        return torch.nn.functional.linear(out - self.w_o.bias, torch.linalg.inv(self.w_o.weight)), w


class MaskNotUnsqueezed(Student):
    def heads(self, query, key, value, mask):
        return scaled_dot_product_attention(split_heads(self.w_q(query), self.num_heads),
                                            split_heads(self.w_k(key), self.num_heads),
                                            split_heads(self.w_v(value), self.num_heads), mask)


class KeyValueSwapped(Student):
    def heads(self, query, key, value, mask):
        self.w_k, self.w_v = self.w_v, self.w_k
        try:
            return super().heads(query, key, value, mask)
        finally:
            self.w_k, self.w_v = self.w_v, self.w_k


class AveragedWeights(Student):
    def forward(self, query, key, value, mask=None):
        out, weights = super().forward(query, key, value, mask)
        return out, weights.mean(1)


class MergedWithoutTranspose(Student):
    def forward(self, query, key, value, mask=None):
        out, weights = self.heads(query, key, value, mask)
        return self.w_o(out.reshape(query.shape)), weights


class OnlyOutput(Student):
    def forward(self, query, key, value, mask=None):
        return super().forward(query, key, value, mask)[0]


@pytest.mark.parametrize("student", [MultiHeadAttention, Student])
def test_multihead_check_accepts_a_right_module(student):
    checks.check_multihead(student)


@pytest.mark.parametrize("student, fragment", [
    (NoOutputProjection, "W^O"),
    (MaskNotUnsqueezed, "mask.unsqueeze(1)"),
    (KeyValueSwapped, "each other's projection"),
    (AveragedWeights, "averaged over the heads"),
    (MergedWithoutTranspose, "merged in the wrong order"),
    (OnlyOutput, "tuple (output, weights)"),
])
def test_multihead_check_names_each_mistake(fails_with, student, fragment):
    fails_with(checks.check_multihead, student, fragment)
