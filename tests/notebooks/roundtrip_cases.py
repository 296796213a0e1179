"""Typical wrong submissions for the nbgrader round trip (tests/test_roundtrip.py).

Each case edits one answer cell of an otherwise correct submission (``old`` -> ``new`` in the
cell whose grade_id is ``cell``) and names the test cells that must then lose all their
points; every other test cell keeps its points. That is the rubric each case implies.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    cell: str
    old: str
    new: str
    fails: frozenset


WRONG_SUBMISSIONS = {
    # --- 00_recurrence: the two exercises and the quiz are graded independently.
    "00_recurrence": [
        Case("update gate blends the wrong way round", "gru_step", "return (1 - z) * n + z * h",
             "return z * n + (1 - z) * h", frozenset({"test_gru_step"})),
        Case("torch's own GRU cell", "gru_step", "    r_x, z_x, n_x = (x @ weight_ih.T + bias_ih).chunk(3, dim=-1)",
             "    return torch.gru_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh)", frozenset({"test_gru_step"})),
        Case("additive scores without the tanh", "additive_scores",
             "return torch.tanh((query @ w_q.T).unsqueeze(1) + keys @ w_k.T) @ v",
             "return ((query @ w_q.T).unsqueeze(1) + keys @ w_k.T) @ v", frozenset({"test_additive_scores"})),
        Case("wrong quiz answer", "quiz_parallel", "quiz_parallel = 2", "quiz_parallel = 1",
             frozenset({"test_quiz_parallel"})),
    ],
    "01_attention": [
        # scaled_softmax is used by attention, so both lose their points.
        Case("missing sqrt(d_k)", "scaled_softmax", "scores / math.sqrt(d_k)", "scores",
             frozenset({"test_scaled_softmax", "test_attention"})),
        Case("inverted mask", "apply_mask", "masked_fill(~mask", "masked_fill(mask",
             frozenset({"test_apply_mask", "test_attention"})),
        Case("wrong quiz answer", "quiz_scaling", "quiz_scaling = 2", "quiz_scaling = 3",
             frozenset({"test_quiz_scaling"})),
    ],
    # --- 02_multi_head_attention: the module's forward uses the student's split_heads and
    # merge_heads, so a mistake in either also costs the module's cell.
    "02_multi_head_attention": [
        Case("merge without transpose", "merge_heads",
             "x.transpose(1, 2).reshape(batch, seq, heads * d_head)", "x.reshape(batch, seq, heads * d_head)",
             frozenset({"test_merge_heads", "test_multihead_attention"})),
        Case("split without transpose", "split_heads", ".transpose(1, 2)", "",
             frozenset({"test_split_heads", "test_multihead_attention"})),
        Case("forward without W^O", "multihead_attention",
             "return self.w_o(merge_heads(out)), weights", "return merge_heads(out), weights",
             frozenset({"test_multihead_attention"})),
        Case("mask not broadcast over the heads", "multihead_attention",
             "mask = mask.unsqueeze(1)", "mask = mask",
             frozenset({"test_multihead_attention"})),
        Case("wrong outline-quiz answer", "quiz_multihead", "quiz_multihead = 2", "quiz_multihead = 1",
             frozenset({"test_quiz_multihead"})),
        Case("wrong d_head quiz answer", "quiz_d_head", "quiz_d_head = 3", "quiz_d_head = 2",
             frozenset({"test_quiz_d_head"})),
    ],
    # --- 03_positional_encoding: the two exercises are graded independently (exercise 2's
    # tests pass their own table), so each mistake costs only its own cell.
    "03_positional_encoding": [
        Case("sin and cos swapped", "sinusoidal_encoding",
             "pe[:, 0::2] = torch.sin(angles)\n    pe[:, 1::2] = torch.cos(angles)",
             "pe[:, 0::2] = torch.cos(angles)\n    pe[:, 1::2] = torch.sin(angles)",
             frozenset({"test_sinusoidal_encoding"})),
        Case("exponent uses i instead of 2i", "sinusoidal_encoding",
             "torch.arange(0, d_model, 2, dtype=torch.float32)", "torch.arange(d_model // 2, dtype=torch.float32)",
             frozenset({"test_sinusoidal_encoding"})),
        Case("token embeddings not scaled", "embed_with_positions",
             "embedding(tokens) * math.sqrt(d_model)", "embedding(tokens)",
             frozenset({"test_embed_with_positions"})),
        Case("wrong quiz answer", "quiz_rotation", "quiz_rotation = 3", "quiz_rotation = 2",
             frozenset({"test_quiz_rotation"})),
    ],
    # --- 04_encoder: the encoder-layer exercise uses nn.LayerNorm, not the student's LayerNorm,
    # so the two exercises are graded independently and each mistake costs only its own cell.
    "04_encoder": [
        Case("unbiased variance", "layer_norm", "unbiased=False", "unbiased=True",
             frozenset({"test_layer_norm"})),
        Case("eps outside the square root", "layer_norm", "torch.sqrt(var + self.eps)",
             "(torch.sqrt(var) + self.eps)", frozenset({"test_layer_norm"})),
        Case("pre-LN order instead of post-LN", "encoder_layer",
             "x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask)[0]))\n"
             "        x = self.norm2(x + self.dropout2(self.ff(x)))",
             "x = x + self.dropout1(self.self_attn(self.norm1(x), mask=mask)[0])\n"
             "        x = x + self.dropout2(self.ff(self.norm2(x)))",
             frozenset({"test_encoder_layer"})),
        Case("feed-forward residual missing", "encoder_layer",
             "self.norm2(x + self.dropout2(self.ff(x)))", "self.norm2(self.dropout2(self.ff(x)))",
             frozenset({"test_encoder_layer"})),
        Case("outline's one-line formula", "encoder_layer",
             "x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask)[0]))\n"
             "        x = self.norm2(x + self.dropout2(self.ff(x)))",
             "x = self.norm1(x + self.dropout1(self.self_attn(x, mask=mask)[0]) + self.dropout2(self.ff(x)))",
             frozenset({"test_encoder_layer"})),
        Case("wrong quiz answer", "quiz_outline", "quiz_outline = 3", "quiz_outline = 2",
             frozenset({"test_quiz_outline"})),
    ],
    # --- 05_decoder: the decoder-layer and is_causal exercises are graded independently
    # (is_causal's tests use course_lib's DecoderLayer), so each mistake costs only its own cell.
    "05_decoder": [
        Case("cross-attention reads the decoder's own states", "decoder_layer",
             "self.cross_attn(x, memory, memory, mask=memory_mask)", "self.cross_attn(x, x, x)",
             frozenset({"test_decoder_layer"})),
        Case("causal mask missing", "decoder_layer",
             "self.self_attn(x, mask=tgt_mask)", "self.self_attn(x)",
             frozenset({"test_decoder_layer"})),
        Case("sub-layers in the wrong order", "decoder_layer",
             "x = self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask)[0]))\n"
             "        x = self.norm2(x + self.dropout2(self.cross_attn(x, memory, memory, mask=memory_mask)[0]))",
             "x = self.norm2(x + self.dropout2(self.cross_attn(x, memory, memory, mask=memory_mask)[0]))\n"
             "        x = self.norm1(x + self.dropout1(self.self_attn(x, mask=tgt_mask)[0]))",
             frozenset({"test_decoder_layer"})),
        Case("is_causal compares the whole output", "is_causal",
             "fn(changed)[:, :t + 1], reference[:, :t + 1]", "fn(changed), reference",
             frozenset({"test_is_causal"})),
        Case("is_causal changes only the last token", "is_causal",
             "changed[:, t + 1:] = torch.randn_like(changed[:, t + 1:])",
             "changed[:, -1] = torch.randn_like(changed[:, -1])",
             frozenset({"test_is_causal"})),
        Case("wrong quiz answer", "quiz_masking", "quiz_masking = 3", "quiz_masking = 2",
             frozenset({"test_quiz_masking"})),
    ],
    # --- 06_training: the four exercises are graded independently (the notebook trains with
    # course_lib's loss, schedule, step and decoding), so each mistake costs only its own cell.
    "06_training": [
        Case("padding averaged into the loss", "label_smoothing_loss",
             "return loss[keep].mean()", "return loss.mean()",
             frozenset({"test_label_smoothing_loss"})),
        Case("max instead of min in the schedule", "rate",
             "min(step ** -0.5, step * warmup ** -1.5)", "max(step ** -0.5, step * warmup ** -1.5)",
             frozenset({"test_rate"})),
        Case("gradients never cleared", "train_step", "    optimizer.zero_grad()\n", "",
             frozenset({"test_train_step"})),
        Case("next token from the first position", "greedy_decode", "hidden[:, -1]", "hidden[:, 0]",
             frozenset({"test_greedy_decode"})),
        Case("wrong quiz answer", "quiz_teacher_forcing", "quiz_teacher_forcing = 2", "quiz_teacher_forcing = 1",
             frozenset({"test_quiz_teacher_forcing"})),
    ],
    # --- 07_bert: the three exercises are graded independently (the NSP and head tests use their
    # own inputs and course_lib's Bert), so each mistake costs only its own cell.
    "07_bert": [
        Case("special tokens and padding can be chosen", "mask_tokens",
             "< 0.15) & ~special_mask", "< 0.15)",
             frozenset({"test_mask_tokens"})),
        Case("the global random state instead of the generator", "mask_tokens",
             "chosen = (torch.rand(input_ids.shape, generator=generator)", "chosen = (torch.rand(input_ids.shape)",
             frozenset({"test_mask_tokens"})),
        Case("labels are the whole input, not -100 where unchosen", "mask_tokens",
             "labels = input_ids.masked_fill(~chosen, -100)", "labels = input_ids.clone()",
             frozenset({"test_mask_tokens"})),
        Case("random B may come from A's own document", "make_nsp_pairs",
             "if j != d and documents[j]", "if documents[j]",
             frozenset({"test_make_nsp_pairs"})),
        Case("head averages all positions instead of reading [CLS]", "classification_head",
             "cls = hidden_states[:, 0]", "cls = hidden_states.mean(dim=1)",
             frozenset({"test_classification_head"})),
        Case("wrong quiz answer", "quiz_mask_rule", "quiz_mask_rule = 2", "quiz_mask_rule = 1",
             frozenset({"test_quiz_mask_rule"})),
    ],
    # --- notebook 08_gpt ---
    "08_gpt": [
        Case("temperature multiplies the logits", "next_token_probs", "logits = logits / temperature",
             "logits = logits * temperature", frozenset({"test_next_token_probs"})),
        Case("top-p drops the token that crosses p", "top_p_filter", "remove_sorted = cumulative - probs >= p",
             "remove_sorted = cumulative > p", frozenset({"test_top_p_filter"})),
        Case("causal mask on the cached step hides the cache", "attend_with_cache",
             "F.scaled_dot_product_attention(q, k, v)", "F.scaled_dot_product_attention(q, k, v, is_causal=True)",
             frozenset({"test_attend_with_cache"})),
        Case("wrong quiz answer", "quiz_kv_cache", "quiz_kv_cache = 2", "quiz_kv_cache = 1",
             frozenset({"test_quiz_kv_cache"})),
    ],
    # --- notebook 09_efficient_attention: the two exercises are graded independently (the
    # linear-attention tests do not use the student's mask), so each mistake costs only its own cell.
    "09_efficient_attention": [
        Case("window off by one", "sliding_window_mask", "mask = offset.abs() <= window",
             "mask = offset.abs() < window", frozenset({"test_sliding_window_mask"})),
        Case("causal ignored in the mask", "sliding_window_mask", "mask = mask & (offset >= 0)",
             "mask = mask", frozenset({"test_sliding_window_mask"})),
        Case("feature map missing", "linear_attention", "phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1",
             "phi_q, phi_k = q, k", frozenset({"test_linear_attention"})),
        Case("normalizer missing", "linear_attention", "return numerator / normalizer",
             "return numerator", frozenset({"test_linear_attention"})),
        Case("causal ignored in linear attention", "linear_attention", "if causal:",
             "if False:", frozenset({"test_linear_attention"})),
        Case("the (seq_q, seq_k) matrix built", "linear_attention", "numerator = phi_q @ state",
             "numerator = (phi_q @ phi_k.transpose(-2, -1)) @ v", frozenset({"test_linear_attention"})),
        Case("wrong quiz answer", "quiz_exact", "quiz_exact = 3", "quiz_exact = 1",
             frozenset({"test_quiz_exact"})),
    ],
    # --- 10_family: the two exercises and the quiz are graded independently (the T5 run uses
    # mix_tasks, but no test cell does).
    "10_family": [
        Case("prefix as rows instead of keys", "prefix_lm_mask",
             "causal | (pos[None, None, :] < prefix_lengths[:, None, None])",
             "causal | (pos[None, :, None] < prefix_lengths[:, None, None])", frozenset({"test_prefix_lm_mask"})),
        Case("one prefix for the whole batch", "prefix_lm_mask",
             "causal | (pos[None, None, :] < prefix_lengths[:, None, None])",
             "(causal | (pos[None, None, :] < prefix_lengths.max())).expand(len(prefix_lengths), -1, -1)",
             frozenset({"test_prefix_lm_mask"})),
        Case("tasks left in blocks", "mix_tasks", "    random.Random(seed).shuffle(mixed)\n", "",
             frozenset({"test_mix_tasks"})),
        Case("the global random state", "mix_tasks", "random.Random(seed).shuffle(mixed)", "random.shuffle(mixed)",
             frozenset({"test_mix_tasks"})),
        Case("the reference called", "mix_tasks", "    random.Random(seed).shuffle(mixed)\n    return mixed",
             "    from course_lib.family import mix_tasks as reference\n    return reference(tasks, seed)",
             frozenset({"test_mix_tasks"})),
        Case("wrong quiz answer", "quiz_family", "quiz_family = 2", "quiz_family = 3",
             frozenset({"test_quiz_family"})),
    ],
}
