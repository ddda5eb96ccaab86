"""Text for the text-to-image chapter and its CLIP judge: a tokenizer over the emoji's names in
English and Japanese, and a small Transformer text encoder.

Tokens. A name is NFKC-normalised and lower-cased; runs of letters and digits outside the
CJK blocks are words ("medium-light", "ok"), and every kana or kanji is a token of its own
("赤いハート" -> 赤 い ハ ー ト): Japanese writes no spaces, and a learner can read a
character vocabulary without a dictionary (a morphological analyser such as MeCab would
need one to be installed). Punctuation and spaces only separate. Every prompt starts with the
token [start]; the empty prompt is [start] alone, the null condition of classifier-free
guidance (as Stable Diffusion encodes the empty string). Ids: 0 is padding, 1 is [UNK] (a
token not in the vocabulary), 2 is [start].

The vocabulary holds the tokens that occur at least MIN_COUNT times in the training names:
a word seen once (a country's name) is [UNK] in training, so the encoder learns what an
unknown word means before it meets one in a test name.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from common.atomic import write_json
from common.errors import DataError, UserError
from common.transformer import PositionEmbedding

PACKAGE = __name__
CONTEXT = 32  # tokens per prompt, [start] included: the longest emoji name has 29
MIN_COUNT = 2
PAD, UNKNOWN, START = 0, 1, 2
START_TOKEN = "[start]"
# A word: letters and digits below the CJK blocks, joined by hyphens; a CJK letter: one token.
_WORD = r"[^\W_\u2e80-\uffff]+(?:-[^\W_\u2e80-\uffff]+)*"
_CJK = r"(?:(?![\W_])[\u2e80-\uffff])"
_TOKENS = re.compile(f"{_WORD}|{_CJK}")


class PromptError(UserError):
    """A prompt the tokenizer cannot take (unknown words, too long): one line for the user."""


def split(text: str) -> list[str]:
    """A name or prompt as tokens (without [start])."""
    return _TOKENS.findall(unicodedata.normalize("NFKC", text).lower())


class Tokenizer:
    """Names -> (n, CONTEXT) int32 token ids, by keras.layers.TextVectorization over the
    pre-split tokens. Build one from training names (`from_texts`), or read one back
    (`load`)."""

    def __init__(self, vocabulary: list[str], context: int = CONTEXT):
        self.vocabulary, self.context = list(vocabulary), context
        self.known = set(self.vocabulary)
        self.layer = layers.TextVectorization(
            standardize=None, split="whitespace", output_sequence_length=context,
            vocabulary=[START_TOKEN, *self.vocabulary])

    @classmethod
    def from_texts(cls, texts, min_count: int = MIN_COUNT,
                   context: int = CONTEXT) -> Tokenizer:
        counts = Counter(token for text in texts for token in split(text))
        # most frequent first, ties alphabetical: the same vocabulary from the same names
        kept = sorted((t for t, c in counts.items() if c >= min_count),
                      key=lambda t: (-counts[t], t))
        return cls(kept, context)

    @property
    def size(self) -> int:
        """Ids in use: padding, [UNK], [start] and the vocabulary."""
        return len(self.vocabulary) + 3

    def unknown(self, text: str) -> list[str]:
        return [token for token in split(text) if token not in self.known]

    def check(self, text: str) -> str:
        """`text` if it can be a prompt, else PromptError: the unknown tokens listed, or the
        length against the context."""
        unknown = self.unknown(text)
        if unknown:
            shown = ", ".join(dict.fromkeys(unknown))
            raise PromptError(f"the prompt {text!r} has words the model never saw in training: "
                              f"{shown} (try a word from an emoji's name)")
        tokens = len(split(text)) + 1
        if tokens > self.context:
            raise PromptError(f"the prompt {text!r} is {tokens} tokens with [start]; the text "
                              f"encoder reads at most {self.context}")
        return text

    def encode(self, texts) -> np.ndarray:
        """(n, CONTEXT) ids: [start], the tokens (unknown ones as [UNK]), then padding;
        tokens past the context are cut (check() refuses such prompts)."""
        joined = [" ".join([START_TOKEN, *split(text)]) for text in texts]
        if not joined:
            return np.zeros((0, self.context), np.int32)
        return np.asarray(self.layer(np.array(joined, dtype=object)), np.int32)

    def decode(self, ids) -> list[str]:
        table = ["", "[UNK]", START_TOKEN, *self.vocabulary]
        return [" ".join(table[i] for i in row if i not in (PAD, START)) for row in np.asarray(ids)]

    def save(self, path: Path) -> None:
        write_json(Path(path), {"context": self.context, "vocabulary": self.vocabulary})

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        record = json.loads(Path(path).read_text())
        return cls(record["vocabulary"], record["context"])


def caption_texts(data, split_name: str = "train") -> list[str]:
    """Every name of the split, English then Japanese: what a tokenizer is built from."""
    index = 0 if split_name == "train" else 1
    if not data.captions:
        raise DataError(f"{data.name} has no names for its images; text needs --dataset emoji")
    return [str(t) for language in sorted(data.captions) for t in data.captions[language][index]]


# ---------------------------------------------------------------------------------------------
# The text encoder.

@keras.saving.register_keras_serializable(package=PACKAGE)
class PaddingMask(layers.Layer):
    """token ids (batch, T) -> (batch, 1, T) booleans, True at real tokens: the attention
    mask that keeps every query from looking at padding."""

    def call(self, tokens):
        return ops.expand_dims(ops.not_equal(tokens, PAD), 1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1, input_shape[1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedMean(layers.Layer):
    """[token vectors (batch, T, width), ids (batch, T)] -> the mean over real tokens."""

    def call(self, inputs):
        vectors, tokens = inputs
        weights = ops.cast(ops.not_equal(tokens, PAD), vectors.dtype)[..., None]
        return ops.sum(vectors * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[0][2])


def build_text_encoder(vocabulary_size: int, context: int = CONTEXT, *, width: int = 64,
                       depth: int = 2, heads: int = 4,
                       name: str = "text_encoder") -> keras.Model:
    """ids (CONTEXT,) -> one width-vector per token (CONTEXT, width).

    Token embedding + learned positions, then `depth` pre-norm Transformer blocks (Vaswani et
    al. 2017; the norm first, as GPT-2) whose attention sees every real token of the prompt,
    in both directions, and never the padding (PaddingMask); a final LayerNorm. Vectors at
    padded positions are computed but must be ignored by whoever reads them (cross-attention
    masks them, MaskedMean skips them)."""
    tokens = keras.Input((context,), dtype="int32", name="tokens")
    mask = PaddingMask(name="padding_mask")(tokens)
    h = layers.Embedding(vocabulary_size, width, name="token_embedding",
                         embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02))(
        tokens)
    h = PositionEmbedding(name="text_positions")(h)
    for i in range(depth):
        a = layers.LayerNormalization(epsilon=1e-5, name=f"text{i}_norm_1")(h)
        a = layers.MultiHeadAttention(heads, width // heads, name=f"text{i}_attention")(
            a, a, attention_mask=mask)
        h = layers.Add(name=f"text{i}_add_1")([h, a])
        m = layers.LayerNormalization(epsilon=1e-5, name=f"text{i}_norm_2")(h)
        m = layers.Dense(2 * width, activation="gelu", name=f"text{i}_mlp_in")(m)
        m = layers.Dense(width, name=f"text{i}_mlp_out")(m)
        h = layers.Add(name=f"text{i}_add_2")([h, m])
    h = layers.LayerNormalization(epsilon=1e-5, name="text_final_norm")(h)
    return keras.Model(tokens, h, name=name)
