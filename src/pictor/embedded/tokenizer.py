"""A word-level tokenizer over the world's vocabulary, stored as a standard `tokenizer.json`.

The vocabulary is closed (the grammar's words), so one id per word; words outside it map to
[UNK] and are reported back by the grammar rather than silently dropped.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit

from pictor.embedded.grammar import VOCABULARY, normalise

PAD, UNK = "[PAD]", "[UNK]"
MAX_LENGTH = 40


class WorldTokenizer:
    def __init__(self, tokenizer: Tokenizer, max_length: int = MAX_LENGTH):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.tokenizer.enable_padding(pad_id=self.pad_id, pad_token=PAD, length=max_length)
        self.tokenizer.enable_truncation(max_length)

    @classmethod
    def build(cls) -> WorldTokenizer:
        vocab = {PAD: 0, UNK: 1}
        for word in sorted(VOCABULARY):
            vocab[word] = len(vocab)
        tokenizer = Tokenizer(WordLevel(vocab, unk_token=UNK))
        tokenizer.pre_tokenizer = WhitespaceSplit()
        return cls(tokenizer)

    @classmethod
    def from_file(cls, path: str | Path) -> WorldTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    @property
    def pad_id(self) -> int:
        return self.tokenizer.token_to_id(PAD)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Ids padded to max_length; the empty text (no conditioning) is all padding."""
        encodings = self.tokenizer.encode_batch([" ".join(normalise(t)) for t in texts])
        return [e.ids for e in encodings]
