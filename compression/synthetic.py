"""Random but SQuAD-shaped token batches, for QAT calibration and export/verification inputs.

Each row looks like a tokenised (question, context) feature: ``[CLS] question [SEP] context [SEP]``
followed by padding, with token type 0 for the question segment, 1 for the context segment and an
attention mask covering the real tokens. Token ids are drawn from the whole-word part of the BERT uncased
vocabulary so activation ranges resemble those of real text more than uniformly random ids would.
No data set is needed, which keeps the untrained benchmark model buildable offline.
"""

from __future__ import annotations

from collections import OrderedDict

import torch

# BERT uncased special tokens (fixed by the vocabulary file layout).
PAD_ID = 0
CLS_ID = 101
SEP_ID = 102
# Ids 1996.. are whole words in bert-uncased (below are [unused], punctuation, digits, single chars).
FIRST_WORD_ID = 1996

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


def synthetic_qa_batch(
    batch_size: int,
    sequence_length: int = 384,
    *,
    vocab_size: int = 30522,
    seed: int = 0,
) -> OrderedDict[str, torch.Tensor]:
    """One batch of int64 ``input_ids``/``attention_mask``/``token_type_ids`` of shape [batch, seq].

    The ordered dict follows the model's forward argument order, which the ONNX exporter relies on.
    """
    if sequence_length < 8:
        raise ValueError(f"sequence_length must be at least 8, got {sequence_length}")
    generator = torch.Generator().manual_seed(seed)
    first_word = FIRST_WORD_ID if vocab_size > FIRST_WORD_ID else 1  # small test vocabularies
    input_ids = torch.full((batch_size, sequence_length), PAD_ID, dtype=torch.int64)
    attention_mask = torch.zeros((batch_size, sequence_length), dtype=torch.int64)
    token_type_ids = torch.zeros((batch_size, sequence_length), dtype=torch.int64)
    for row in range(batch_size):
        # SQuAD v1.1 at 384 tokens: questions ~10-20 tokens, most contexts fill half to all of the window.
        question_len = int(torch.randint(6, 24, (1,), generator=generator))
        total_len = int(torch.randint(sequence_length // 2, sequence_length + 1, (1,), generator=generator))
        context_len = max(1, total_len - question_len - 3)
        tokens = torch.randint(first_word, vocab_size, (question_len + context_len,), generator=generator)
        sequence = torch.cat(
            [
                torch.tensor([CLS_ID]),
                tokens[:question_len],
                torch.tensor([SEP_ID]),
                tokens[question_len:],
                torch.tensor([SEP_ID]),
            ]
        )[:sequence_length]
        length = sequence.numel()
        input_ids[row, :length] = sequence
        attention_mask[row, :length] = 1
        token_type_ids[row, question_len + 2 : length] = 1
    return OrderedDict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def synthetic_qa_batches(
    num_batches: int,
    batch_size: int,
    sequence_length: int = 384,
    *,
    vocab_size: int = 30522,
    seed: int = 0,
) -> list[OrderedDict[str, torch.Tensor]]:
    """``num_batches`` independent :func:`synthetic_qa_batch` batches (seeds ``seed``, ``seed+1`` ...)."""
    return [
        synthetic_qa_batch(batch_size, sequence_length, vocab_size=vocab_size, seed=seed + index)
        for index in range(num_batches)
    ]
