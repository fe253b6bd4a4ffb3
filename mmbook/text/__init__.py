"""Text: tokenizer, vocabulary, text encoders, the memory task and exercise checkers."""

from mmbook.text.classify import TextClassifier, predict_text, trim_padding
from mmbook.text.checks import check_attention, check_gru_cell, check_lstm_cell, check_rnn_cell
from mmbook.text.encoders import (
    RECURRENT_KINDS, TEXT_ENCODER_KINDS, PositionalEncoding, TextEncoder, TokenEncoder, check_tokens,
    lengths_from_padding,
)
from mmbook.text.memory import MemoryTask, MemoryTaskGenerator, make_memory_task
from mmbook.text.vocab import PAD_ID, PAD_TOKEN, UNK_ID, UNK_TOKEN, LabelVocabulary, Vocabulary, tokenize

__all__ = [
    "LabelVocabulary", "PAD_ID", "PAD_TOKEN", "RECURRENT_KINDS", "TEXT_ENCODER_KINDS", "MemoryTask", "MemoryTaskGenerator",
    "PositionalEncoding", "TextClassifier", "TextEncoder", "TokenEncoder", "UNK_ID", "UNK_TOKEN", "Vocabulary", "check_attention", "check_gru_cell",
    "check_lstm_cell", "check_rnn_cell", "check_tokens", "lengths_from_padding", "make_memory_task",
    "predict_text", "tokenize", "trim_padding",
]
