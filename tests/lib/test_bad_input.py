"""Bad input across course_lib: every public entry point refuses it with a message that names the argument.

``BAD_CALLS`` is a table of wrong shapes, dtypes, sizes, empty inputs, NaN, wrong types and
out-of-range ids. Each call must raise TypeError or ValueError (never a torch error from deep
inside, never a silent wrong result, never a hang) whose message names the argument.
``test_every_public_callable_is_in_the_table`` makes a new function join it: each public
function and class of the library is in the table or in ``EXEMPT``, with the reason.
"""
from __future__ import annotations

import datetime as dt
import importlib
import inspect
import pkgutil
import random
import signal
from contextlib import contextmanager
from typing import Callable, Iterator, NamedTuple

import pytest
import torch
from torch import nn

import course_lib
from course_lib import (
    attention,
    attention_maps,
    batching,
    bert,
    decoder,
    decoding,
    efficient,
    encoder,
    family,
    gpt,
    multihead,
    positional,
    recurrent,
    sampling,
    training,
)
from course_lib.data import dates, tokenizers

SECONDS = 10  # a call that takes longer hangs


def f(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def ids(*shape: int, high: int = 9) -> torch.Tensor:
    return torch.randint(0, high, shape)


def tiny_transformer() -> decoder.Transformer:
    return decoder.Transformer(9, 9, d_model=8, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                               d_ff=16, dropout=0.0, max_len=16).eval()


def tiny_gpt() -> gpt.GPT:
    return gpt.GPT(gpt.GPTConfig(10, max_len=8, num_layers=1, num_heads=2, d_model=8)).eval()


def tiny_bert_config() -> bert.BertConfig:
    return bert.BertConfig(vocab_size=20, d_model=8, num_layers=1, num_heads=2, d_ff=16, max_len=16)


def char_tokenizer() -> tokenizers.CharTokenizer:
    return tokenizers.CharTokenizer("abc")


def optimizer_of(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1)


def lm_batch() -> batching.LMBatch:
    return batching.LMBatch(ids(2, 4, high=10), ids(2, 4, high=10))


def fit_gpt(**kwargs) -> training.History:
    model = tiny_gpt()
    args = dict(model=model, train_batches=[lm_batch()], optimizer=optimizer_of(model), loss_fn=training.lm_loss,
                steps=1, progress=False)
    return training.fit(**{**args, **kwargs})


def one_shot():
    yield lm_batch()


class Bad(NamedTuple):
    target: str          # "module:Name" or "module:Class.method", the entry point called
    call: Callable[[], object]
    names: str           # what the message must contain: the argument's name
    errors: tuple[type[Exception], ...] = (TypeError, ValueError)


B = Bad
BAD_CALLS = [
    # --- attention ---
    B("attention:causal_mask", lambda: attention.causal_mask(-1), "seq_len"),
    B("attention:causal_mask", lambda: attention.causal_mask(2.5), "seq_len"),
    B("attention:padding_mask", lambda: attention.padding_mask([[1, 0]], 0), "tokens"),
    B("attention:padding_mask", lambda: attention.padding_mask(f(2, 3), 0), "tokens"),
    B("attention:from_key_padding_mask", lambda: attention.from_key_padding_mask(torch.ones(3, dtype=torch.bool)),
      "key_padding_mask"),
    B("attention:to_key_padding_mask", lambda: attention.to_key_padding_mask(torch.ones(2, 3, 4, dtype=torch.bool)),
      "mask"),
    B("attention:scaled_dot_product_attention",
      lambda: attention.scaled_dot_product_attention([[1.0]], f(3, 4), f(3, 2)), "q"),
    B("attention:scaled_dot_product_attention",
      lambda: attention.scaled_dot_product_attention(f(4), f(3, 4), f(3, 2)), "q"),
    B("attention:scaled_dot_product_attention",
      lambda: attention.scaled_dot_product_attention(ids(1, 4), ids(3, 4), ids(3, 2)), "q"),
    B("attention:scaled_dot_product_attention",
      lambda: attention.scaled_dot_product_attention(f(2, 1, 4), f(3, 3, 4), f(3, 3, 2)), "q, k and v"),
    B("attention:scaled_dot_product_attention",  # a mask of the wrong batch
      lambda: attention.scaled_dot_product_attention(f(2, 1, 4), f(2, 3, 4), f(2, 3, 2),
                                                     torch.ones(3, 1, 3, dtype=torch.bool)), "mask"),
    B("attention:scaled_dot_product_attention",
      lambda: attention.scaled_dot_product_attention(f(1, 4), f(3, 4), f(3, 2), [[True, True, True]]), "mask"),
    B("attention:scaled_dot_product_attention",
      lambda: attention.scaled_dot_product_attention(f(1, 4), f(3, 4), f(3, 2), dropout_p=float("nan")),
      "dropout_p"),
    # --- multihead ---
    B("multihead:split_heads", lambda: multihead.split_heads(f(2, 8), 2), "x"),
    B("multihead:split_heads", lambda: multihead.split_heads(f(2, 3, 8), 0), "num_heads"),
    B("multihead:split_heads", lambda: multihead.split_heads(f(2, 3, 8), 3), "num_heads"),
    B("multihead:merge_heads", lambda: multihead.merge_heads(f(2, 3, 8)), "x"),
    B("multihead:MultiHeadAttention", lambda: multihead.MultiHeadAttention(8, 0), "num_heads"),
    B("multihead:MultiHeadAttention", lambda: multihead.MultiHeadAttention(-8, 2), "d_model"),
    B("multihead:MultiHeadAttention", lambda: multihead.MultiHeadAttention(8, 2, dropout=1.5), "dropout"),
    B("multihead:MultiHeadAttention.forward", lambda: multihead.MultiHeadAttention(8, 2)([[0.0] * 8]), "query"),
    B("multihead:MultiHeadAttention.forward",  # a mask of the wrong batch
      lambda: multihead.MultiHeadAttention(8, 2)(f(2, 3, 8), mask=torch.ones(3, 3, 3, dtype=torch.bool)), "mask"),
    B("multihead:MultiHeadAttention.forward",  # a mask of the wrong number of heads
      lambda: multihead.MultiHeadAttention(8, 2)(f(2, 3, 8), mask=torch.ones(2, 3, 3, 3, dtype=torch.bool)), "mask"),
    B("multihead:copy_torch_attention",
      lambda: multihead.copy_torch_attention(multihead.MultiHeadAttention(8, 2), multihead.MultiHeadAttention(8, 2)),
      "torch_mha"),
    B("multihead:copy_torch_attention",
      lambda: multihead.copy_torch_attention(nn.MultiheadAttention(8, 2), multihead.MultiHeadAttention(4, 2)), "mha"),
    B("multihead:copy_torch_attention",
      lambda: multihead.copy_torch_attention(nn.MultiheadAttention(8, 2), nn.Linear(8, 8)), "mha"),
    B("multihead:to_torch_attention", lambda: multihead.to_torch_attention(nn.Linear(8, 8), 2), "mha"),
    B("multihead:to_torch_attention",
      lambda: multihead.to_torch_attention(multihead.MultiHeadAttention(8, 2), 3), "num_heads"),
    # --- positional ---
    B("positional:sinusoidal_encoding", lambda: positional.sinusoidal_encoding(10, 7), "d_model"),
    B("positional:sinusoidal_encoding", lambda: positional.sinusoidal_encoding(0, 8), "max_len"),
    B("positional:sinusoidal_encoding", lambda: positional.sinusoidal_encoding("10", 8), "max_len"),
    B("positional:TokenEmbedding", lambda: positional.TokenEmbedding(0, 8), "vocab_size"),
    B("positional:TokenEmbedding", lambda: positional.TokenEmbedding(10, 8, padding_idx=10), "padding_idx"),
    B("positional:TokenEmbedding.forward", lambda: positional.TokenEmbedding(10, 8)(ids(2, 3, high=10) + 10),
      "tokens"),  # out-of-range ids
    B("positional:TokenEmbedding.forward", lambda: positional.TokenEmbedding(10, 8)(-ids(2, 3) - 1), "tokens"),
    B("positional:TokenEmbedding.forward", lambda: positional.TokenEmbedding(10, 8)([[1, 2]]), "tokens"),
    B("positional:TokenEmbedding.forward", lambda: positional.TokenEmbedding(10, 8)(f(2, 3)), "tokens"),
    B("positional:SinusoidalPositionalEncoding", lambda: positional.SinusoidalPositionalEncoding(8, dropout=-0.1),
      "dropout"),
    B("positional:SinusoidalPositionalEncoding.forward",  # integer input: the table would round to 0
      lambda: positional.SinusoidalPositionalEncoding(8, 16)(ids(2, 3, 8)), "x"),
    B("positional:SinusoidalPositionalEncoding.forward",
      lambda: positional.SinusoidalPositionalEncoding(8, 4)(f(2, 5, 8)), "x"),
    B("positional:LearnedPositionalEmbedding", lambda: positional.LearnedPositionalEmbedding(0, 8), "max_len"),
    B("positional:LearnedPositionalEmbedding.forward",
      lambda: positional.LearnedPositionalEmbedding(16, 8)(ids(2, 3, 8)), "x"),
    B("positional:LearnedPositionalEmbedding.forward",
      lambda: positional.LearnedPositionalEmbedding(16, 8)(f(2, 3, 4)), "x"),
    # --- encoder ---
    B("encoder:FeedForward", lambda: encoder.FeedForward(8, 0), "d_ff"),
    B("encoder:FeedForward", lambda: encoder.FeedForward(8, 16, activation="tanh"), "activation"),
    B("encoder:FeedForward.forward", lambda: encoder.FeedForward(8, 16)(ids(2, 3, 8)), "x"),
    B("encoder:LayerNorm", lambda: encoder.LayerNorm(8, eps=0.0), "eps"),
    B("encoder:LayerNorm", lambda: encoder.LayerNorm(None), "d_model"),
    B("encoder:LayerNorm.forward", lambda: encoder.LayerNorm(8)(f(2, 7)), "x"),
    B("encoder:EncoderLayer", lambda: encoder.EncoderLayer(10, 3, 16), "d_model"),
    B("encoder:EncoderLayer.forward", lambda: encoder.EncoderLayer(8, 2, 16)(f(3, 8)), "x"),
    B("encoder:EncoderLayer.forward",
      lambda: encoder.EncoderLayer(8, 2, 16)(f(2, 3, 8), torch.ones(4, 1, 3, dtype=torch.bool)), "mask"),
    B("encoder:Encoder", lambda: encoder.Encoder(0, 8, 2, 16), "num_layers"),
    B("encoder:Encoder.forward", lambda: encoder.Encoder(1, 8, 2, 16)([[1.0] * 8]), "x"),
    B("encoder:copy_torch_encoder_layer",
      lambda: encoder.copy_torch_encoder_layer(encoder.EncoderLayer(8, 2, 16), encoder.EncoderLayer(8, 2, 16)),
      "torch_layer"),
    # --- decoder ---
    B("decoder:target_mask", lambda: decoder.target_mask(torch.tensor([1, 2, 0]), 0), "tgt"),
    B("decoder:target_mask", lambda: decoder.target_mask([[1, 2, 0]], 0), "tgt"),
    B("decoder:DecoderLayer", lambda: decoder.DecoderLayer(8, 2, 16, dropout=2.0), "dropout"),
    B("decoder:DecoderLayer.forward", lambda: decoder.DecoderLayer(8, 2, 16)(f(2, 3, 8), f(3, 4, 8)), "memory"),
    B("decoder:DecoderLayer.forward",
      lambda: decoder.DecoderLayer(8, 2, 16)(f(2, 3, 8), f(2, 4, 8), memory_mask=torch.ones(2, 1, 3, dtype=torch.bool)),
      "memory_mask"),
    B("decoder:Decoder", lambda: decoder.Decoder(0, 8, 2, 16), "num_layers"),
    B("decoder:Decoder.forward", lambda: decoder.Decoder(1, 8, 2, 16)(f(2, 3, 8), None), "memory"),
    B("decoder:Transformer", lambda: decoder.Transformer(0, 9, 8, 2, 1, 1, 16), "src_vocab_size"),
    B("decoder:Transformer.forward", lambda: tiny_transformer()(ids(2, 5) + 9, ids(2, 3)), "src"),
    B("decoder:Transformer.forward", lambda: tiny_transformer()(ids(2, 5), ids(3, 3)), "tgt"),
    B("decoder:Transformer.forward", lambda: tiny_transformer()([[1, 2]], ids(1, 3)), "src"),
    B("decoder:Transformer.encode", lambda: tiny_transformer().encode(ids(2, 5).float()), "src"),
    B("decoder:Transformer.decode", lambda: tiny_transformer().decode(ids(2, 3, high=20), f(2, 5, 8)), "tgt"),
    B("decoder:copy_torch_decoder_layer",
      lambda: decoder.copy_torch_decoder_layer(nn.TransformerEncoderLayer(8, 2, 16), decoder.DecoderLayer(8, 2, 16)),
      "torch_layer"),
    # --- batching ---
    B("batching:pad_sequences", lambda: batching.pad_sequences([]), "sequences"),
    B("batching:pad_sequences", lambda: batching.pad_sequences("abc"), "sequences"),
    B("batching:pad_sequences", lambda: batching.pad_sequences([[1.5, 2.0]]), "sequences[0]"),
    B("batching:pad_sequences", lambda: batching.pad_sequences([[1, 2]], pad_id="0"), "pad_id"),
    B("batching:make_batch", lambda: batching.make_batch([[1]], []), "sources and targets"),
    B("batching:make_batch", lambda: batching.make_batch(["abc"], ["de"]), "sources[0]"),
    B("batching:BatchLoader", lambda: batching.BatchLoader([], 2), "pairs"),
    B("batching:BatchLoader", lambda: batching.BatchLoader([([1], [2])], 0), "batch_size"),
    B("batching:BatchLoader", lambda: batching.BatchLoader([([1], "x")], 2), "targets of pairs"),
    B("batching:get_batch", lambda: batching.get_batch(torch.arange(10), 10, 2), "block_size"),
    B("batching:get_batch", lambda: batching.get_batch(torch.arange(10), 4, 0), "batch_size"),
    B("batching:get_batch", lambda: batching.get_batch(torch.arange(10.0), 4, 2), "data"),
    B("batching:lm_batches", lambda: next(batching.lm_batches([1, 2, 3], 2, 2)), "data"),
    B("batching:lm_windows", lambda: batching.lm_windows(torch.arange(10).view(2, 5), 2), "data"),
    B("batching:lm_windows", lambda: batching.lm_windows(torch.arange(10), 2, max_batches=0), "max_batches"),
    # --- training ---
    B("training:LabelSmoothingLoss", lambda: training.LabelSmoothingLoss(1.0), "smoothing"),
    B("training:LabelSmoothingLoss", lambda: training.LabelSmoothingLoss(float("nan")), "smoothing"),
    B("training:LabelSmoothingLoss.forward", lambda: training.LabelSmoothingLoss()(f(2, 5), f(2)), "target"),
    B("training:LabelSmoothingLoss.forward", lambda: training.LabelSmoothingLoss()(f(2, 5), ids(3)), "logits"),
    B("training:transformer_lr", lambda: training.transformer_lr(10, -512), "d_model"),
    B("training:transformer_lr", lambda: training.transformer_lr(10, 0), "d_model"),
    B("training:transformer_lr", lambda: training.transformer_lr(10, 512, warmup=0), "warmup"),
    B("training:transformer_lr", lambda: training.transformer_lr(-1, 512), "step"),
    B("training:transformer_optimizer", lambda: training.transformer_optimizer(nn.Linear(2, 2), 0), "d_model"),
    B("training:transformer_optimizer", lambda: training.transformer_optimizer([nn.Parameter(f(2))], 8), "model"),
    B("training:lm_loss", lambda: training.lm_loss(f(2, 4, 10), ids(2, 5)), "targets"),
    B("training:lm_loss", lambda: training.lm_loss(f(2, 10), ids(2)), "logits"),
    B("training:adamw", lambda: training.adamw(nn.Linear(2, 2), lr=-1.0), "lr"),
    B("training:adamw", lambda: training.adamw("model", lr=1e-3), "model"),
    B("training:warmup_cosine", lambda: training.warmup_cosine(0, 0, 0), "total"),
    B("training:warmup_cosine", lambda: training.warmup_cosine(0, 10, 2, min_ratio=2.0), "min_ratio"),
    B("training:WarmupCosine",
      lambda: training.WarmupCosine(optimizer_of(nn.Linear(2, 2)), total=0, warmup=1), "total"),
    B("training:autocast", lambda: training.autocast("gpu"), "device"),
    B("training:autocast", lambda: training.autocast(0.5), "device"),
    B("training:train_step",
      lambda: training.train_step(tiny_gpt(), [f(2), f(2)], training.lm_loss, optimizer_of(tiny_gpt())), "batch"),
    B("training:train_step",
      lambda: training.train_step(tiny_gpt(), lm_batch(), "lm_loss", optimizer_of(tiny_gpt())), "loss_fn"),
    B("training:train_step",
      lambda: training.train_step(tiny_gpt(), lm_batch(), training.lm_loss, optimizer_of(tiny_gpt()), max_norm=0.0),
      "max_norm"),
    B("training:evaluate", lambda: training.evaluate(tiny_gpt(), lm_batch(), training.lm_loss), "batches"),
    B("training:evaluate", lambda: training.evaluate(tiny_gpt(), [], training.lm_loss), "batches"),
    B("training:evaluate", lambda: training.evaluate(tiny_gpt(), [lm_batch()], training.lm_loss, "tpu"), "device"),
    B("training:fit", lambda: fit_gpt(train_batches=[]), "train_batches"),  # used to loop forever
    B("training:fit", lambda: fit_gpt(train_batches=one_shot(), steps=3, max_seconds=1.0), "train_batches"),
    B("training:fit", lambda: fit_gpt(steps=0), "steps"),
    B("training:fit", lambda: fit_gpt(eval_every=0), "eval_every"),
    B("training:fit", lambda: fit_gpt(max_seconds=-1), "max_seconds"),
    B("training:fit", lambda: fit_gpt(history={}), "history"),
    B("training:fit", lambda: fit_gpt(optimizer="adam"), "optimizer"),
    B("training:save_checkpoint", lambda: training.save_checkpoint(None, nn.Linear(2, 2)), "path"),
    B("training:save_checkpoint", lambda: training.save_checkpoint("/tmp/x.pt", {"w": 1}), "model"),
    B("training:load_checkpoint", lambda: training.load_checkpoint("/nonexistent/ckpt.pt", nn.Linear(2, 2)), "path",
      (FileNotFoundError,)),
    # --- decoding ---
    B("decoding:greedy_decode", lambda: decoding.greedy_decode(tiny_transformer(), ids(1, 4), 0), "max_len"),
    B("decoding:greedy_decode", lambda: decoding.greedy_decode(tiny_transformer(), [[1, 2]], 5), "src"),
    B("decoding:greedy_decode", lambda: decoding.greedy_decode(tiny_transformer(), ids(1, 4) + 9, 5), "src"),
    B("decoding:greedy_decode", lambda: decoding.greedy_decode(tiny_gpt(), ids(1, 4), 5), "model"),
    B("decoding:greedy_decode",
      lambda: decoding.greedy_decode(tiny_transformer(), ids(2, 4), 5, src_mask=torch.ones(3, 1, 4, dtype=torch.bool)),
      "src_mask"),
    B("decoding:beam_search", lambda: decoding.beam_search(tiny_transformer(), ids(1, 4), 5, beam_size=0),
      "beam_size"),
    B("decoding:beam_search", lambda: decoding.beam_search(tiny_transformer(), ids(1, 4), 0), "max_len"),
    B("decoding:translate", lambda: decoding.translate(tiny_transformer(), char_tokenizer(), "abc"), "sentences"),
    B("decoding:translate", lambda: decoding.translate(tiny_transformer(), char_tokenizer(), ["abc"], beam_size=0),
      "beam_size"),
    B("decoding:beam_search", lambda: decoding.beam_search(tiny_transformer(), ids(1, 4), 5, alpha=float("nan")),
      "alpha"),
    # --- sampling ---
    B("sampling:apply_temperature", lambda: sampling.apply_temperature(f(2, 5), 0.0), "temperature"),
    B("sampling:apply_temperature", lambda: sampling.apply_temperature(f(2, 5), "hot"), "temperature"),
    B("sampling:apply_temperature", lambda: sampling.apply_temperature([1.0, 2.0], 1.0), "logits"),
    B("sampling:top_k_filter", lambda: sampling.top_k_filter(f(2, 5), 0), "k"),
    B("sampling:top_k_filter", lambda: sampling.top_k_filter(f(2, 5), 2.5), "k"),
    B("sampling:top_p_filter", lambda: sampling.top_p_filter(f(2, 5), 1.5), "p"),
    B("sampling:top_p_filter", lambda: sampling.top_p_filter(f(2, 5), float("nan")), "p"),
    B("sampling:sample_next", lambda: sampling.sample_next(f(2, 5), temperature=-1.0), "temperature"),
    B("sampling:sample_next", lambda: sampling.sample_next(f(2, 5), top_k=0), "top_k"),
    B("sampling:sample_next", lambda: sampling.sample_next(f(5)), "logits"),
    B("sampling:generate", lambda: sampling.generate(tiny_gpt(), ids(1, 3, high=10), -1), "max_new_tokens"),
    B("sampling:generate", lambda: sampling.generate(tiny_gpt(), ids(1, 3, high=10) + 10, 2), "idx"),
    B("sampling:generate", lambda: sampling.generate(tiny_transformer(), ids(1, 3), 2), "model"),
    B("sampling:generate", lambda: sampling.generate(tiny_gpt(), ids(1, 3, high=10), 2, top_p=0.0), "top_p"),
    # --- bert ---
    B("bert:BertConfig", lambda: bert.BertConfig(d_model=10, num_heads=4), "num_heads"),
    B("bert:BertConfig", lambda: bert.BertConfig(vocab_size=0), "vocab_size"),
    B("bert:BertConfig", lambda: bert.BertConfig(dropout=1.5), "dropout"),
    B("bert:BertConfig.from_hf", lambda: bert.BertConfig.from_hf({"vocab_size": 10}), "config"),
    B("bert:BertConfig.from_hf", lambda: bert.BertConfig.from_hf("bert-base-cased"), "config"),
    B("bert:BertEmbeddings", lambda: bert.BertEmbeddings({"vocab_size": 10}), "config"),
    B("bert:BertEmbeddings.forward", lambda: bert.BertEmbeddings(tiny_bert_config())(ids(2, 3, high=20) + 20),
      "input_ids"),
    B("bert:BertEmbeddings.forward",
      lambda: bert.BertEmbeddings(tiny_bert_config())(ids(2, 3), ids(2, 3) + 2), "token_type_ids"),
    B("bert:Bert", lambda: bert.Bert(None), "config"),
    B("bert:Bert.forward", lambda: bert.Bert(tiny_bert_config())(ids(2, 3), torch.ones(2, 4)), "attention_mask"),
    B("bert:Bert.forward", lambda: bert.Bert(tiny_bert_config())(ids(2, 3), [[1, 1, 1]] * 2), "attention_mask"),
    B("bert:Bert.forward", lambda: bert.Bert(tiny_bert_config())(f(2, 3)), "input_ids"),
    B("bert:Bert.from_pretrained", lambda: bert.Bert.from_pretrained("./no/such/checkpoint"), "source",
      (FileNotFoundError,)),
    B("bert:ClassificationHead", lambda: bert.ClassificationHead(8, 0), "num_labels"),
    B("bert:ClassificationHead.forward", lambda: bert.ClassificationHead(8, 2)(f(2, 8)), "hidden_states"),
    B("bert:BertForClassification", lambda: bert.BertForClassification(tiny_bert_config(), -1), "num_labels"),
    B("bert:BertForClassification.forward",
      lambda: bert.BertForClassification(tiny_bert_config(), 2)(ids(2, 3) + 20), "input_ids"),
    B("bert:MaskedLMHead", lambda: bert.MaskedLMHead(tiny_bert_config(), nn.Linear(8, 20)), "word_embeddings"),
    B("bert:MaskedLMHead.forward",
      lambda: bert.MaskedLMHead(tiny_bert_config(), nn.Embedding(20, 8))(f(2, 3, 4)), "hidden_states"),
    B("bert:BertForMaskedLM", lambda: bert.BertForMaskedLM("bert-base"), "config"),
    B("bert:BertForMaskedLM.forward", lambda: bert.BertForMaskedLM(tiny_bert_config())(ids(2, 17)), "x"),
    B("bert:mlm_loss", lambda: bert.mlm_loss(f(2, 3, 20), f(2, 3)), "labels"),
    B("bert:mlm_loss", lambda: bert.mlm_loss(f(2, 20), ids(2)), "logits"),
    B("bert:read_checkpoint", lambda: bert.read_checkpoint("/no/such/folder"), "source", (FileNotFoundError,)),
    B("bert:read_checkpoint", lambda: bert.read_checkpoint(42), "source"),
    B("bert:parameter_counts", lambda: bert.parameter_counts({"d_model": 8}), "config"),
    B("bert:special_tokens_mask", lambda: bert.special_tokens_mask([[1, 2]], [0]), "input_ids"),
    B("bert:special_tokens_mask", lambda: bert.special_tokens_mask(ids(2, 3), "[CLS]"), "special_ids"),
    B("bert:mask_tokens",
      lambda: bert.mask_tokens(ids(2, 3), torch.zeros(2, 3, dtype=torch.bool), 30, vocab_size=20), "mask_token_id"),
    B("bert:mask_tokens", lambda: bert.mask_tokens(ids(2, 3), torch.zeros(2, 3), 3, vocab_size=20), "special_mask"),
    B("bert:mask_tokens",
      lambda: bert.mask_tokens(ids(2, 3), torch.zeros(2, 3, dtype=torch.bool), 3, 20, mlm_probability=1.5),
      "mlm_probability"),
    B("bert:make_nsp_pairs", lambda: bert.make_nsp_pairs([["a", "b"]], random.Random(0)), "documents"),
    B("bert:make_nsp_pairs", lambda: bert.make_nsp_pairs(["one text", "another"], random.Random(0)), "documents[0]"),
    B("bert:make_nsp_pairs", lambda: bert.make_nsp_pairs([["a", "b"], []], random.Random(0)), "documents"),
    B("bert:make_nsp_pairs", lambda: bert.make_nsp_pairs([["a", "b"], ["c"]], 0), "rng"),
    # --- gpt ---
    B("gpt:GPTConfig", lambda: gpt.GPTConfig(10, d_model=10, num_heads=4), "num_heads"),
    B("gpt:GPTConfig", lambda: gpt.GPTConfig(0), "vocab_size"),
    B("gpt:GPTConfig", lambda: gpt.GPTConfig(10, activation="relu6"), "activation"),
    B("gpt:layer_norm", lambda: gpt.layer_norm({"d_model": 8}), "config"),
    B("gpt:CausalSelfAttention.forward", lambda: gpt.CausalSelfAttention(8, 2)(f(2, 3, 4)), "x"),
    B("gpt:CausalSelfAttention.forward",
      lambda: gpt.CausalSelfAttention(8, 2)(f(2, 1, 8), (f(3, 2, 4, 4), f(3, 2, 4, 4))), "past"),
    B("gpt:Block", lambda: gpt.Block(None), "config"),
    B("gpt:Block.forward", lambda: gpt.Block(gpt.GPTConfig(10, d_model=8, num_heads=2))(f(2, 3)), "x"),
    B("gpt:GPT", lambda: gpt.GPT({"vocab_size": 10}), "config"),
    B("gpt:GPT.forward", lambda: tiny_gpt()(ids(2, 3, high=10) + 10), "idx"),
    B("gpt:GPT.forward", lambda: tiny_gpt()(ids(2, 9, high=10)), "max_len"),
    B("gpt:GPT.forward", lambda: tiny_gpt()([[1, 2]]), "idx"),
    B("gpt:GPT.forward", lambda: tiny_gpt()(ids(2, 1, high=10), [f(2, 2, 3, 4)]), "past"),
    B("gpt:GPT.from_gpt2", lambda: gpt.GPT.from_gpt2(tiny_gpt()), "hf_model"),
    # --- attention_maps ---
    B("attention_maps:attention_maps", lambda: attention_maps.attention_maps("not a model", f(1, 2, 4)), "model"),
    B("attention_maps:layer_head_grid", lambda: attention_maps.layer_head_grid([], "encoder", "self_attn"), "maps"),
    B("attention_maps:head_patterns", lambda: attention_maps.head_patterns(
        {"attn": f(1, 2, 3, 3)}, "", "attn", f(1, 3), torch.ones(1, 3), {}), "token_ids"),
    B("attention_maps:head_patterns", lambda: attention_maps.head_patterns(
        {"attn": f(1, 2, 3, 3)}, "", "attn", torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 4), {}),
      "attention_mask"),
    B("attention_maps:layer_head_grid", lambda: attention_maps.layer_head_grid({}, "encoder", "self_attn"),
      "stack and kind"),
    # --- efficient ---
    B("efficient:time_call", lambda: efficient.time_call(lambda: None, "cpu", repeats=0), "repeats"),
    B("efficient:time_call", lambda: efficient.time_call(None, "cpu"), "fn"),
    B("efficient:time_call", lambda: efficient.time_call(lambda: None, "gpu0"), "device"),
    B("efficient:peak_memory", lambda: efficient.peak_memory("not callable", "cpu"), "fn"),
    B("efficient:sdpa_backend", lambda: efficient.sdpa_backend([[1.0]], f(1, 4), f(1, 4)), "q"),
    B("efficient:sliding_window_mask", lambda: efficient.sliding_window_mask(4, -1), "window"),
    B("efficient:sliding_window_mask", lambda: efficient.sliding_window_mask(-4, 1), "seq_len"),
    B("efficient:block_sparse_layout", lambda: efficient.block_sparse_layout(4, neighbours=-1), "neighbours"),
    B("efficient:block_sparse_layout", lambda: efficient.block_sparse_layout(4.0), "num_blocks"),
    B("efficient:block_sparse_mask", lambda: efficient.block_sparse_mask(4, 0), "block_size"),
    B("efficient:sliding_window_attention",
      lambda: efficient.sliding_window_attention(f(2, 8, 4), f(2, 8, 4), f(2, 8, 4), 2.5), "window"),
    B("efficient:sliding_window_attention",
      lambda: efficient.sliding_window_attention(f(2, 8, 4), f(3, 8, 4), f(3, 8, 4), 2), "q, k and v"),
    B("efficient:sliding_window_attention",
      lambda: efficient.sliding_window_attention([[1.0]], f(1, 4), f(1, 4), 2), "q"),
    B("efficient:block_sparse_attention",
      lambda: efficient.block_sparse_attention(f(8, 4), f(8, 4), f(8, 4), 0), "block_size"),
    B("efficient:block_sparse_attention",
      lambda: efficient.block_sparse_attention(f(8, 4), f(8, 5), f(8, 4), 2), "q, k and v"),
    B("efficient:elu_feature_map", lambda: efficient.elu_feature_map([1.0, -1.0]), "x"),
    B("efficient:linear_attention", lambda: efficient.linear_attention(f(5, 4), f(6, 4), f(7, 3)), "k and v"),
    B("efficient:linear_attention", lambda: efficient.linear_attention(f(5, 4), f(6, 4), f(6, 3), causal=True),
      "seq_q == seq_k"),
    B("efficient:linear_attention",
      lambda: efficient.linear_attention(f(5, 4), f(6, 4), f(6, 3), feature_map="elu"), "feature_map"),
    # --- data.tokenizers ---
    B("data.tokenizers:CharTokenizer", lambda: tokenizers.CharTokenizer(["ab", "c"]), "alphabet"),
    B("data.tokenizers:CharTokenizer", lambda: tokenizers.CharTokenizer(42), "alphabet"),
    B("data.tokenizers:CharTokenizer.from_texts", lambda: tokenizers.CharTokenizer.from_texts([1, 2]), "texts"),
    B("data.tokenizers:CharTokenizer.encode", lambda: char_tokenizer().encode(["a", "b"]), "text"),
    B("data.tokenizers:CharTokenizer.decode", lambda: char_tokenizer().decode([-1]), "ids"),  # was the last char
    B("data.tokenizers:CharTokenizer.decode", lambda: char_tokenizer().decode([4, 99]), "ids"),
    B("data.tokenizers:CharTokenizer.decode", lambda: char_tokenizer().decode("abc"), "ids"),
    B("data.tokenizers:CharTokenizer.tokens", lambda: char_tokenizer().tokens(torch.tensor([7])), "ids"),
    B("data.tokenizers:BPETokenizer", lambda: tokenizers.BPETokenizer("a tokenizer"), "tokenizer"),
    B("data.tokenizers:BPETokenizer.train", lambda: tokenizers.BPETokenizer.train("the cat", vocab_size=60), "texts"),
    B("data.tokenizers:BPETokenizer.train", lambda: tokenizers.BPETokenizer.train(["the cat"], vocab_size=2),
      "vocab_size"),
    B("data.tokenizers:BPETokenizer.load", lambda: tokenizers.BPETokenizer.load("/no/such/tokenizer.json"), "path",
      (FileNotFoundError,)),
    # --- data.dates ---
    B("data.dates:human_date", lambda: dates.human_date(dt.date(2021, 3, 3), -1), "style"),
    B("data.dates:human_date", lambda: dates.human_date(dt.date(2021, 3, 3), 99), "style"),
    B("data.dates:human_date", lambda: dates.human_date("2021-03-03", 0), "day"),
    # --- recurrent ---
    B("recurrent:gru_cell", lambda: recurrent.gru_cell([[1.0]], f(1, 2), f(6, 1), f(6, 2), f(6), f(6)), "x"),
    B("recurrent:gru_cell", lambda: recurrent.gru_cell(f(2, 3), f(1, 4), f(12, 3), f(12, 4), f(12), f(12)), "h"),
    B("recurrent:gru_cell", lambda: recurrent.gru_cell(f(2, 3), f(2, 4), f(8, 3), f(12, 4), f(12), f(12)),
      "weight_ih"),
    B("recurrent:gru_cell", lambda: recurrent.gru_cell(f(2, 3), f(2, 4), f(12, 3), f(12, 4), f(12), f(4)), "bias_hh"),
    B("recurrent:additive_scores", lambda: recurrent.additive_scores(f(2, 3), f(1, 5, 4), f(6, 3), f(6, 4), f(6)),
      "keys"),
    B("recurrent:additive_scores", lambda: recurrent.additive_scores(f(2, 3), f(2, 5, 4), f(6, 4), f(6, 4), f(6)),
      "w_q"),
    B("recurrent:AdditiveAttention", lambda: recurrent.AdditiveAttention(3, 0, 4), "d_key"),
    B("recurrent:AdditiveAttention.forward",
      lambda: recurrent.AdditiveAttention(3, 4, 5)(f(2, 3), f(2, 6, 4), torch.ones(2, 5, dtype=torch.bool)), "mask"),
    B("recurrent:Seq2Seq", lambda: recurrent.Seq2Seq(0), "vocab_size"),
    B("recurrent:Seq2Seq", lambda: recurrent.Seq2Seq(10, d_hidden=2.5), "d_hidden"),
    B("recurrent:Seq2Seq.encode", lambda: recurrent.Seq2Seq(10).encode(f(2, 3)), "src"),
    B("recurrent:Seq2Seq.forward", lambda: recurrent.Seq2Seq(10)(ids(2, 3, high=10), ids(3, 2, high=10)), "tgt"),
    B("data.dates:iso_date", lambda: dates.iso_date("2021-03-03"), "day"),
    B("data.dates:date_splits", lambda: dates.date_splits({"train": 10}, fractions={"train": 0.5, "test": 0.5}),
      "sizes and fractions"),
    B("data.dates:date_splits", lambda: dates.date_splits({"train": -1, "test": 1}, fractions={"train": 0.5,
                                                                                                 "test": 0.5}),
      "sizes['train']"),
    B("data.dates:date_splits", lambda: dates.date_splits({"train": 5, "test": 5}, fractions={"train": 1.0,
                                                                                                "test": 0.0}),
      "fractions['test']"),
    # --- family ---
    B("family:prefix_lm_mask", lambda: family.prefix_lm_mask(torch.tensor([[2]]), 4), "prefix_lengths"),
    B("family:prefix_lm_mask", lambda: family.prefix_lm_mask(torch.tensor([2.0]), 4), "prefix_lengths"),
    B("family:prefix_lm_mask", lambda: family.prefix_lm_mask(torch.tensor([5]), 4), "prefix_lengths"),
    B("family:prefix_lm_mask", lambda: family.prefix_lm_mask(torch.tensor([-1]), 4), "prefix_lengths"),
    B("family:prefix_lm_mask", lambda: family.prefix_lm_mask(torch.tensor([1]), 2.5), "seq_len"),
    B("family:mix_tasks", lambda: family.mix_tasks([("a", "b")]), "tasks"),
    B("family:mix_tasks", lambda: family.mix_tasks({"iso": ["3 March 2021"]}), "tasks['iso']"),
    B("family:mix_tasks", lambda: family.mix_tasks({"iso": [("3 March 2021", 2021)]}), "tasks['iso']"),
    B("family:mix_tasks", lambda: family.mix_tasks({"a: b": [("x", "y")]}), "tasks"),
    B("family:mix_tasks", lambda: family.mix_tasks({"a": [("x", "y")]}, seed="0"), "seed"),
]

# Public callables that the table leaves out, and why.
EXEMPT = {
    "batching:Batch": "a plain record of tensors; make_batch builds it and is in the table",
    "batching:LMBatch": "a NamedTuple of (inputs, targets); get_batch and lm_windows build it",
    "training:History": "a plain record that fit fills; fit checks the history it is given",
    "bert:BertStates": "a NamedTuple that Bert.forward returns",
    "bert:NSPPair": "a NamedTuple that make_nsp_pairs returns",
}
EXEMPT_MODULES = {
    "course_lib.checks": "the student checks: they report mistakes as CheckFailed, tested per notebook",
    "course_lib.viz": "figures only",
    "course_lib.device": "device and profile selection, tested in test_device.py",
    "course_lib.validation": "the checks themselves: every row of the table runs through them",
    "course_lib.data": "cache_dir only (the data package's __init__)",
    **{f"course_lib.data.{name}": "a corpus or asset reader, with its own tests in tests/lib/data"
       for name in ("assets", "bible", "rdata", "austen", "reviews")},
}


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail, instead of hanging, when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"the call ran longer than {seconds} s: it hangs")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("bad", BAD_CALLS, ids=[f"{b.target}-{i}" for i, b in enumerate(BAD_CALLS)])
def test_bad_input_is_refused_naming_the_argument(bad: Bad):
    torch.manual_seed(0)
    with deadline(SECONDS), pytest.raises(bad.errors) as caught:
        bad.call()
    message = str(caught.value)
    assert bad.names in message, f"the message does not name {bad.names!r}: {message}"
    assert " must " in message, f"the message does not say what was expected: {message}"


def public_callables() -> list[str]:
    """Every public function and class defined in a course_lib module the table covers, as "module:Name"."""
    found = []
    for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        if info.name in EXEMPT_MODULES or info.name.startswith("course_lib.checks."):
            continue
        module = importlib.import_module(info.name)
        short = info.name.removeprefix("course_lib.")
        found += [f"{short}:{name}" for name, obj in vars(module).items()
                  if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
                  and obj.__module__ == info.name]
    return found


def test_every_public_callable_is_in_the_table():
    covered = {module + ":" + name.split(".")[0] for module, _, name in (b.target.partition(":") for b in BAD_CALLS)}
    missing = [name for name in public_callables() if name not in covered and name not in EXEMPT]
    assert not missing, f"add bad calls of these to BAD_CALLS, or a reason to EXEMPT: {missing}"
    stale = [name for name in EXEMPT if name in covered or name not in public_callables()]
    assert not stale, f"EXEMPT names these, which are in the table or no longer exist: {stale}"
