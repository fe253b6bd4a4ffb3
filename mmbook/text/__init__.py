"""Text: tokenizer, vocabulary and text encoders."""

from mmbook.text.encoders import RECURRENT_KINDS, TextEncoder, check_tokens, lengths_from_padding, text_encoder
from mmbook.text.vocab import PAD_ID, PAD_TOKEN, UNK_ID, UNK_TOKEN, Vocabulary, tokenize

__all__ = [
    "PAD_ID", "PAD_TOKEN", "RECURRENT_KINDS", "TextEncoder", "UNK_ID", "UNK_TOKEN", "Vocabulary",
    "check_tokens", "lengths_from_padding", "text_encoder", "tokenize",
]
