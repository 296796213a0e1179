"""Student-facing checks used by the notebooks' visible tests: ``checks.check_attention(attention)``
(introduced in notebook 01_attention).

Each check runs the student's code on small random inputs, compares the result with
course_lib's reference and, when they differ, tries the common wrong versions so that
the message can name the likely mistake instead of printing two tensors.

Modules: ``engine`` (CheckFailed, the ``exercise`` wrapper, own_work, check_close, check_choice and the
shared inputs), then one
per notebook: ``nb00_recurrence``, ``nb01_attention``, ``nb02_multi_head_attention``, ``nb03_positional_encoding``,
``nb04_encoder``, ``nb05_decoder``, ``nb06_training``, ``nb07_bert``, ``nb08_gpt``,
``nb09_efficient_attention``, ``nb10_family``.
"""
from .engine import CheckFailed, check_choice, check_close, own_work
from .nb00_recurrence import check_additive_scores, check_gru_step
from .nb01_attention import check_apply_mask, check_attention, check_attention_scores, check_scaled_softmax
from .nb02_multi_head_attention import check_merge_heads, check_multihead, check_split_heads
from .nb03_positional_encoding import check_embed_with_positions, check_sinusoidal_encoding
from .nb04_encoder import check_encoder_layer, check_layer_norm
from .nb05_decoder import check_decoder_layer, check_is_causal
from .nb06_training import check_greedy_decode, check_label_smoothing_loss, check_rate, check_train_step
from .nb07_bert import check_classification_head, check_mask_tokens, check_nsp_pairs
from .nb08_gpt import check_attend_with_cache, check_next_token_probs, check_top_p_filter
from .nb09_efficient_attention import check_linear_attention, check_sliding_window_mask
from .nb10_family import check_mix_tasks, check_prefix_lm_mask

__all__ = [
    "CheckFailed", "check_choice", "check_close", "own_work",
    "check_gru_step", "check_additive_scores",
    "check_attention_scores", "check_scaled_softmax", "check_apply_mask", "check_attention",
    "check_split_heads", "check_merge_heads", "check_multihead",
    "check_sinusoidal_encoding", "check_embed_with_positions",
    "check_layer_norm", "check_encoder_layer",
    "check_decoder_layer", "check_is_causal",
    "check_label_smoothing_loss", "check_rate", "check_train_step", "check_greedy_decode",
    "check_mask_tokens", "check_nsp_pairs", "check_classification_head",
    "check_next_token_probs", "check_top_p_filter", "check_attend_with_cache",
    "check_sliding_window_mask", "check_linear_attention",
    "check_prefix_lm_mask", "check_mix_tasks",
]
