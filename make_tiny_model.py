"""Makes a small BERT base without weights: a character vocabulary and a BertConfig, saved with save_pretrained.

The Hub is out of reach on CI and on offline machines, so tests, benchmarks and download.sh's demo models start from
such a directory and train it with `--from_scratch`:

    python make_tiny_model.py --output_dir models/tiny-base --texts data/context.json data/train.json

The vocabulary holds [PAD] [UNK] [CLS] [SEP] [MASK], printable ASCII, every character of the given texts, ## word-piece
continuations of all but the CJK ideographs (BERT splits Latin words, digits and symbols into word pieces, but every
CJK ideograph into a token of its own), and with --all_cjk every CJK Unified Ideograph (U+4E00-U+9FFF), so that text
never seen before is still tokenized character by character, as bert-base-chinese does.

For English text (run_intent.py, run_slot.py), --words N adds the N most frequent words of the texts (lower-cased,
split at spaces and punctuation as BERT does) as whole tokens: a word-piece vocabulary in the manner of
bert-base-uncased, where frequent words are one piece and the others are cut into characters (word pieces).

    python make_tiny_model.py --output_dir models/tiny-english --texts data/slot/train.json --words 2000
"""

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tokenizers.pre_tokenizers import BertPreTokenizer
from transformers import BertConfig, BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        # Record ids name records, they are not text ("train-17" would make "train" and "17" frequent words).
        for key, item in value.items():
            if key != "id":
                yield from _strings(item)


def build_vocabulary(texts=(), all_cjk=False, words=0):
    """The tokens of the vocabulary, in order: special tokens, ASCII, the other characters (sorted), then the `words`
    most frequent words of the texts (most frequent first)."""
    ascii_characters = [chr(code) for code in range(33, 127)]
    tokens = SPECIAL_TOKENS + ascii_characters + [f"##{ch}" for ch in ascii_characters if ch.isalnum()]
    others = set()
    for text in texts:
        for string in _strings(text):
            others.update(ch for ch in string if not ch.isspace())
    if all_cjk:
        others.update(chr(code) for code in range(0x4E00, 0xA000))
    # The tokenizer lower-cases before looking up, so upper-case letters never match.
    others = sorted(ch for ch in others if ch not in tokens and ch == ch.lower())
    # Characters other than CJK ideographs can continue a word ("15℃", "ＡＢＣ"): give them word-piece forms too, as
    # bert-base-chinese does, so that a word boundary inside such a word stays representable.
    continuations = [f"##{ch}" for ch in others if not _is_cjk_ideograph(ch)]
    return tokens + others + continuations + frequent_words(texts, words)


def frequent_words(texts, count):
    """The `count` most frequent words of 2+ characters in the texts, lower-cased and split at spaces and
    punctuation like BERT's own pre-tokenization (CJK text is left out: BERT cuts it into characters)."""
    split = BertPreTokenizer()
    counts = Counter(
        word
        for text in texts
        for string in _strings(text)
        for word, _ in split.pre_tokenize_str(string.lower())
        if len(word) > 1 and not any(_is_cjk_ideograph(ch) for ch in word)
    )
    return [word for word, _ in counts.most_common(count)]


def _is_cjk_ideograph(ch):
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2FA1F or 0xF900 <= code <= 0xFAFF
    )


def make_tiny_model(
    output_dir: str | Path,
    texts: Sequence[object] = (),
    all_cjk: bool = False,
    words: int = 0,
    num_layers: int = 2,
    hidden_size: int = 64,
    num_heads: int = 2,
    intermediate_size: int = 128,
    max_positions: int = 512,
) -> str | Path:
    """Saves tokenizer files and config.json to `output_dir` (no weights: train it with --from_scratch).

    Args:
        output_dir: the folder, created when missing.
        texts: strings or parsed JSON values (lists, objects) whose characters go into the vocabulary; the values of
            "id" keys are left out.
        all_cjk: add every CJK Unified Ideograph (U+4E00-U+9FFF).
        words: add the `words` most frequent words of the texts as tokens (frequent_words).
        num_layers, hidden_size, num_heads, intermediate_size, max_positions: the sizes of the BertConfig.

    Returns:
        `output_dir`, as given.
    """
    tokens = build_vocabulary(texts, all_cjk, words)
    tokenizer = BertTokenizer(vocab={token: index for index, token in enumerate(tokens)})
    config = BertConfig(
        vocab_size=len(tokens),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_positions,
        pad_token_id=tokenizer.pad_token_id,
    )
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(output_dir)
    config.save_pretrained(output_dir)
    return output_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--texts", nargs="*", default=[], help="JSON files whose characters go into the vocabulary.")
    parser.add_argument("--all_cjk", action="store_true", help="Add every CJK Unified Ideograph to the vocabulary.")
    parser.add_argument(
        "--words", type=int, default=0, metavar="N", help="Add the N most frequent words of the texts as tokens."
    )
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_heads", type=int, default=2)
    parser.add_argument("--intermediate_size", type=int, default=128)
    args = parser.parse_args()
    texts = [json.loads(Path(path).read_text(encoding="utf-8")) for path in args.texts]
    make_tiny_model(
        args.output_dir,
        texts,
        args.all_cjk,
        args.words,
        args.num_layers,
        args.hidden_size,
        args.num_heads,
        args.intermediate_size,
    )
    print(f"Wrote a {args.num_layers}-layer, hidden {args.hidden_size} BERT config and tokenizer to {args.output_dir}")


if __name__ == "__main__":
    main()
