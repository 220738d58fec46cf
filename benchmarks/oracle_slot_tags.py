"""Checks the slot tag alignment of run_slot.py end to end on real data: logits that put the gold tag on each word's
first piece, and a wrong tag on every other position ([CLS], [SEP], a word's later pieces), must read back as exactly
the gold tags of every utterance (run_slot.prepare_slot_features, then run_slot.tags_per_word).

    python benchmarks/oracle_slot_tags.py ../shared/data/intent-slot/slot/train.json

Also counts the words whose first piece spells the beginning of the word (the rest are [UNK]: a word the vocabulary
cannot spell, or one the tokenizer turns into no piece at all, such as ""). The tokenizer is --tokenizer (a Hub id or
a local directory, e.g. bert-base-uncased or roberta-base where the Hub is reachable), or by default two vocabularies
built from the file by make_tiny_model.py: characters only (every word of 2+ characters is cut into pieces) and
characters plus the 2,000 most frequent words. At a --max_seq_length that cuts utterances, the words past the cut get
"O" (run_slot.CUT_WORD_TAG), so only utterances whose cut words are all "O" can be reproduced.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from adl_data import load_slot_utterances  # noqa: E402
from make_tiny_model import make_tiny_model  # noqa: E402
from run_slot import (  # noqa: E402
    IGNORED_LABEL,
    prepare_slot_features,
    tags_per_word,
    words_with_pieces,
)


def adversarial_predictions(labels, tag_count):
    """The gold label where there is one; elsewhere the label after the last one seen (a wrong tag for its word)."""
    predictions = []
    for utterance_labels in labels:
        last, predicted = 0, []
        for label in utterance_labels:
            if label == IGNORED_LABEL:
                predicted.append((last + 1) % tag_count)
            else:
                predicted.append(label)
                last = label
        predictions.append(predicted)
    return predictions


def first_piece_spells_word(token, word, tokenizer):
    piece = token.removeprefix("##").removeprefix("Ġ")
    return bool(piece) and word.lower().replace(" ", "").startswith(piece) and token != tokenizer.unk_token


def check(name, utterances, tokenizer, max_seq_length):
    tag_names = sorted({tag for utterance in utterances for tag in utterance["tags"]})
    label2id = {tag: index for index, tag in enumerate(tag_names)}
    examples = {"tokens": [u["tokens"] for u in utterances], "tags": [u["tags"] for u in utterances]}
    started = time.perf_counter()
    features = prepare_slot_features(examples, tokenizer, max_seq_length, label2id=label2id)
    seconds = time.perf_counter() - started
    predicted = tags_per_word(
        adversarial_predictions(features["labels"], len(tag_names)), features["first_pieces"], tag_names
    )
    reproduced = sum(p == u["tags"] for p, u in zip(predicted, utterances))
    words = sum(len(u["tokens"]) for u in utterances)
    spelled, several_pieces = 0, 0
    for index, utterance in enumerate(utterances):
        tokens = tokenizer.convert_ids_to_tokens(features["input_ids"][index])
        positions = features["first_pieces"][index]
        for word_index, (word, position) in enumerate(zip(utterance["tokens"], positions)):
            if position < 0:
                continue
            spelled += first_piece_spells_word(tokens[position], word, tokenizer)
            following = positions[word_index + 1] if word_index + 1 < len(positions) else len(tokens) - 1
            several_pieces += following > position + 1 if following >= 0 else False
    cut = sum(-1 in pieces for pieces in features["first_pieces"])
    pieceless = sum(
        word != given
        for utterance, words in zip(utterances, words_with_pieces(examples["tokens"], tokenizer))
        for word, given in zip(utterance["tokens"], words)
    )
    print(
        f"{name}, max_seq_length {max_seq_length}: oracle reproduces the gold tags of {reproduced}/{len(utterances)} "
        f"utterances = {100 * reproduced / len(utterances):.2f}%; {words} words, {several_pieces} cut into several "
        f"pieces, {spelled} with a first piece that spells the word's beginning, {pieceless} without any piece of "
        f"their own (given as {tokenizer.unk_token}); "
        f"{cut} utterances cut by truncation, the longest kept {max(map(len, features['input_ids']))} tokens "
        f"(features in {seconds:.2f} s)"
    )
    for utterance, tags in [(u, p) for u, p in zip(utterances, predicted) if p != u["tags"]][:3]:
        print(f"    {utterance['id']}: gold {' '.join(utterance['tags'])}; read back {' '.join(tags)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("slot_file", help="A labelled slot file ({tokens, tags, id} records), e.g. slot/train.json.")
    parser.add_argument("--tokenizer", help="Hub id or directory of a tokenizer (default: two built from the file).")
    parser.add_argument("--max_seq_length", type=int, nargs="+", default=[128, 16])
    args = parser.parse_args()

    utterances = load_slot_utterances(args.slot_file, need_tags=True)
    with tempfile.TemporaryDirectory() as work:
        if args.tokenizer:
            # As run_slot.py loads it: words are pre-split, so each one starts after a space.
            tokenizers = {args.tokenizer: AutoTokenizer.from_pretrained(args.tokenizer, add_prefix_space=True)}
        else:
            tokenizers = {
                f"{vocabulary} vocabulary": AutoTokenizer.from_pretrained(
                    make_tiny_model(Path(work) / vocabulary, texts=[utterances], words=words)
                )
                for vocabulary, words in [("character", 0), ("word-piece (2,000 words)", 2000)]
            }
        for name, tokenizer in tokenizers.items():
            for max_seq_length in args.max_seq_length:
                check(name, utterances, tokenizer, max_seq_length)


if __name__ == "__main__":
    main()
