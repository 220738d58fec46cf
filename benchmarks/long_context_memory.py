"""Memory and time of one question read end to end: a base-size Longformer and BigBird over 4,096 tokens (one window
holds all 4 candidates) against BERT-base over 512-token windows, for one training step (forward and backward) and for
inference, in fp32 on the CPU.

    python benchmarks/long_context_memory.py [--lengths 4096] [--windows 5] [--memory_limit_gib 16]

The models are built from their configs with random weights (no Hub): the sizes of the Chinese checkpoints (12
layers, hidden 768, 12 heads; Longformer attention window 512, BigBird blocks of 64 with 3 random blocks), a vocabulary
of 21,128 tokens as bert-base-chinese. Each measurement runs in a fresh process; memory is the growth of the peak
resident set size over the process after building the model (activations, gradients and temporaries; not the
weights), time the CPU time of the step (user + system, all threads: on a shared machine, wall time depends on the
load). BERT reads `--windows` windows of 512 tokens in one batch: 5 is what a
question of the development data needs with its 4 candidates joined (docs/end-to-end.md).
"""

import argparse
import json
import resource
import subprocess
import sys

VOCABULARY = 21128
BASE = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": VOCABULARY,
    "type_vocab_size": 2,
}


def measure(kind, length, batch, train, limit_gib=None):
    """Runs in a child process: builds the model, runs one step, returns peak memory growth (MiB) and CPU seconds.
    With `limit_gib`, the process's data segment is capped there, so that a step too large for the machine fails
    with an allocation error instead of calling the kernel's out-of-memory killer on a shared machine."""
    if limit_gib:
        resource.setrlimit(resource.RLIMIT_DATA, (int(limit_gib * 2**30), int(limit_gib * 2**30)))
    import torch
    from transformers import (
        BertConfig,
        BertForQuestionAnswering,
        BigBirdConfig,
        BigBirdForQuestionAnswering,
        LongformerConfig,
        LongformerForQuestionAnswering,
    )

    torch.manual_seed(0)
    if kind == "longformer":
        model = LongformerForQuestionAnswering(
            LongformerConfig(
                **BASE, attention_window=512, max_position_embeddings=length + 2, pad_token_id=0, sep_token_id=102
            )
        )
    elif kind == "big_bird":
        model = BigBirdForQuestionAnswering(
            BigBirdConfig(
                **BASE,
                attention_type="block_sparse",
                block_size=64,
                num_random_blocks=3,
                max_position_embeddings=length,
                pad_token_id=0,
                sep_token_id=102,
            )
        )
    else:
        model = BertForQuestionAnswering(BertConfig(**BASE, max_position_embeddings=length))
    model.train(train)
    input_ids = torch.randint(1000, VOCABULARY, (batch, length))
    input_ids[:, 0], input_ids[:, 20], input_ids[:, -1] = 101, 102, 102  # [CLS] question [SEP] candidates [SEP]
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": (torch.arange(length) > 20).long().expand(batch, length),
    }
    if kind == "longformer":
        inputs["global_attention_mask"] = (torch.arange(length) < 20).long().expand(batch, length)
    before = resource.getrusage(resource.RUSAGE_SELF)
    if train:
        output = model(**inputs, start_positions=torch.full((batch,), 30), end_positions=torch.full((batch,), 32))
        output.loss.backward()
    else:
        with torch.inference_mode():
            model(**inputs)
    after = resource.getrusage(resource.RUSAGE_SELF)
    seconds = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    growth = (after.ru_maxrss - before.ru_maxrss) / 1024
    if kind == "big_bird":
        assert model.base_model.attention_type == "block_sparse"
    return {"MiB": round(growth), "seconds": round(seconds, 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096], help="Tokens of a long-context window.")
    parser.add_argument("--windows", type=int, default=5, help="512-token windows BERT reads for one question.")
    parser.add_argument(
        "--memory_limit_gib", type=float, default=16, help="Cap on each measurement's memory (0: none)."
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, length, batch, train = args.child
        print(json.dumps(measure(kind, int(length), int(batch), train == "train", args.memory_limit_gib)))
        return

    settings = [("bert", 512, args.windows)] + [
        (kind, length, 1) for length in args.lengths for kind in ("longformer", "big_bird")
    ]
    print("| model | tokens x sequences | training step: memory | CPU time | inference: memory | CPU time |")
    print("|---|---|---:|---:|---:|---:|")
    for kind, length, batch in settings:
        cells = []
        for mode in ("train", "infer"):
            child = [sys.executable, __file__, "--child", kind, str(length), str(batch), mode]
            result = subprocess.run(
                [*child, "--memory_limit_gib", str(args.memory_limit_gib)], capture_output=True, text=True, check=False
            )
            if result.returncode:
                print(result.stderr.strip().splitlines()[-1], file=sys.stderr)
                cells += [f"over {args.memory_limit_gib:g} GiB (failed)", "–"]
                continue
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            cells += [f"{measured['MiB']:,} MiB", f"{measured['seconds']} s"]
        print(f"| {kind} | {length} x {batch} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
