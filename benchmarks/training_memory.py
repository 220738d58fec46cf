"""Peak memory of one training step of a bert-base-chinese-sized model, for the two stages at train.sh's per-device
batches and smaller ones: forward, backward, gradient clipping and an AdamW step, as the Trainer runs them.

    python benchmarks/training_memory.py [--configs NAME ...] [--precisions fp32 bf16] \
        [--attention fused math] [--steps 2] [--memory_limit_gib 20]

The model has random weights (memory does not depend on them) and the shape of bert-base-chinese: vocabulary 21,128,
hidden 768, 12 layers, 12 heads, intermediate 3,072, 512 positions. Paragraph selection (BertForMultipleChoice) reads
Q questions x 4 candidates x 512 tokens per step, span selection (BertForQuestionAnswering) B windows x 512 tokens;
train.sh's batches are Q = 2 and B = 8 (x gradient accumulation 8 and 2: 16 questions). Every configuration runs
--steps training steps (the Adam states are allocated at the first) in a fresh process, so that peaks do not mix:
AdamW with fp32 weights, gradients and states (the Trainer's default, adamw_torch_fused), gradients clipped to norm 1,
gradients set to None after each step. bf16 is torch.autocast("cpu", dtype=torch.bfloat16) around the forward pass
and the loss, as --bf16 puts torch.autocast("cuda") there on a GPU: the weights, gradients and Adam states stay fp32,
the activations that matrix products save are bf16. Checkpointing is model.gradient_checkpointing_enable(), what
--gradient_checkpointing turns on.

The attention kernel. BERT attends through torch's scaled_dot_product_attention (SDPA). On a GPU, SDPA runs a fused
kernel (memory-efficient or flash attention) that never stores the 512 x 512 attention matrix of a head, dropout
included. On a CPU, the fused kernel has no dropout, so with BERT's attention dropout of 0.1 the CPU falls back to
the plain "math" kernel, which keeps each head's scores, probabilities and dropout mask for the backward pass. So:
- `fused`: attention dropout set to 0, so that the CPU runs its fused kernel and stores what a GPU's SDPA stores: the
  activation memory of a GPU run (its arithmetic differs only by the dropout on the attention probabilities);
- `math`: the model exactly as configured, the CPU's math kernel: what training on this CPU takes, and what a GPU takes
  with attn_implementation="eager" (which also stores the attention probabilities).

Memory is the peak resident set size of the process (resource.getrusage(RUSAGE_SELF).ru_maxrss, Linux: KiB) minus
its resident size just before the model is built (Python, torch, transformers imported): weights, gradients, Adam
states, the autocast cache of bf16 weights, activations and temporaries. "Of which parameters + gradients + Adam" is
4 x 4 bytes per parameter: weights, gradients, and Adam's two moments, all fp32. Step time is the wall time of the
last step (on a shared machine it depends on the load; memory does not).

These are CPU figures (PyTorch's CPU allocator, which hands large blocks back to the system when freed). A GPU adds
the CUDA context (several hundred MiB: CUDA runtime, cuBLAS and cuDNN kernels) and the caching allocator's reserved
but unused blocks (fragmentation), so they are lower bounds for GPU memory, not the figure that nvidia-smi shows.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch
from transformers import BertConfig, BertForMultipleChoice, BertForQuestionAnswering

BERT_BASE_CHINESE = {
    "vocab_size": 21128,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
}
LENGTH = 512  # train.sh's --max_seq_length
CANDIDATES = 4  # candidate paragraphs per question
QUESTION_TOKENS = 40  # [CLS] question [SEP]; then paragraph tokens to the window's end
# name: (stage, per-device batch: questions for paragraph selection, windows for span selection, checkpointing)
CONFIGS = {
    "paragraph-q1": ("paragraph selection", 1, False),
    "paragraph-q2": ("paragraph selection", 2, False),
    "paragraph-q4": ("paragraph selection", 4, False),
    "paragraph-q2-checkpointing": ("paragraph selection", 2, True),
    "span-b1": ("span selection", 1, False),
    "span-b2": ("span selection", 2, False),
    "span-b4": ("span selection", 4, False),
    "span-b8": ("span selection", 8, False),
    "span-b8-checkpointing": ("span selection", 8, True),
}
RECOMMENDED = {"paragraph selection": 2, "span selection": 8}  # train.sh's --per_device_train_batch_size


def resident_mib():
    """The resident set size of this process now, in MiB (Linux: /proc/self/statm counts pages)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def make_batch(stage, batch):
    """Token ids of full 512-token sequences (paragraphs of 1,000+ characters fill the window) and the labels."""
    shape = (batch, CANDIDATES, LENGTH) if stage == "paragraph selection" else (batch, LENGTH)
    input_ids = torch.randint(1000, BERT_BASE_CHINESE["vocab_size"], shape)
    input_ids[..., 0], input_ids[..., QUESTION_TOKENS - 1], input_ids[..., -1] = 101, 102, 102  # [CLS], [SEP], [SEP]
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "token_type_ids": (torch.arange(LENGTH) >= QUESTION_TOKENS).long().expand(shape),
    }
    if stage == "paragraph selection":
        inputs["labels"] = torch.randint(0, CANDIDATES, (batch,))
    else:
        inputs["start_positions"] = torch.randint(QUESTION_TOKENS, LENGTH - 10, (batch,))
        inputs["end_positions"] = inputs["start_positions"] + 5
    return inputs


def measure(name, precision, attention, steps):
    """Runs in a fresh process: builds the model, runs `steps` training steps; returns memory (MiB) and time."""
    stage, batch, checkpointing = CONFIGS[name]
    torch.manual_seed(0)
    baseline = resident_mib()
    dropout = {"attention_probs_dropout_prob": 0.0} if attention == "fused" else {}
    config = BertConfig(**BERT_BASE_CHINESE, **dropout)
    model_class = BertForMultipleChoice if stage == "paragraph selection" else BertForQuestionAnswering
    model = model_class(config)
    if checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    parameters = sum(p.numel() for p in model.parameters())
    # The Trainer's default optimizer (adamw_torch_fused): two fp32 moments per parameter. It splits the parameters
    # into groups with and without weight decay, which changes no memory.
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-5, betas=(0.9, 0.999), eps=1e-8, fused=True)
    inputs = make_batch(stage, batch)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        model.zero_grad()  # set_to_none: the gradients are freed until the next backward
        seconds.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "peak_MiB": peak - baseline,
        "baseline_MiB": baseline,
        "parameters": parameters,
        "states_MiB": 4 * 4 * parameters / 2**20,
        "step_s": seconds[-1],
        "kernel": attention_kernel(model, inputs, precision),
    }


def attention_kernel(model, inputs, precision):
    """The name of the SDPA kernel that the forward pass ran (from the profiler), to show which one was measured."""
    prefix = "aten::_scaled_dot_product_"  # the kernels' names; aten::scaled_dot_product_attention chooses among them
    with torch.profiler.profile() as profile, torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
        model(**{key: value[:1] for key, value in inputs.items()})
    kernels = {event.name.removeprefix(prefix) for event in profile.events() if event.name.startswith(prefix)}
    return ", ".join(sorted(kernels)) or "?"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument(
        "--attention",
        nargs="+",
        choices=["fused", "math"],
        default=["fused", "math"],
        help="fused: attention dropout 0, the CPU's fused SDPA kernel, which stores what a GPU's stores; math: "
        "attention dropout 0.1, the CPU's math kernel (stores each head's attention matrix).",
    )
    parser.add_argument("--steps", type=int, default=2, help="Training steps per configuration (at least 2).")
    parser.add_argument(
        "--memory_limit_gib", type=float, default=20, help="Cap on each configuration's memory (0: none)."
    )
    parser.add_argument("--output_json", help="Also write the figures to this JSON file.")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2 (the Adam states are allocated at the first step)")
    if args.child:
        if args.memory_limit_gib:
            limit = int(args.memory_limit_gib * 2**30)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
        name, precision, attention, steps = args.child
        print(json.dumps(measure(name, precision, attention, int(steps))))
        return

    print(
        f"Peak memory of a training step, bert-base-chinese-sized BertConfig with random weights, 512 tokens per "
        f"sequence, {args.steps} steps per configuration, each in a fresh process; torch {torch.__version__}, CPU, "
        f"{torch.get_num_threads()} threads."
    )
    print(
        "CPU measurements (PyTorch's CPU allocator): peak resident memory above the process before the model was "
        "built. A GPU adds the CUDA context (several hundred MiB) and its caching allocator's reserved, unused "
        "blocks, so these are LOWER BOUNDS for GPU memory. Attention 'fused' is the SDPA kernel a GPU runs (with "
        "attention dropout 0 here, as the CPU's fused kernel has none); 'math' is the CPU's fallback with dropout.\n",
        flush=True,
    )
    print(
        "| configuration | per-device batch | sequences x tokens | precision | checkpointing | attention "
        "(CPU kernel) | peak MiB above baseline | of which parameters + gradients + Adam | step seconds |"
    )
    print("|---|---|---|---|---|---|---:|---:|---:|", flush=True)
    results = []
    for name in args.configs:
        stage, batch, checkpointing = CONFIGS[name]
        sequences = batch * CANDIDATES if stage == "paragraph selection" else batch
        unit = ("question" if stage == "paragraph selection" else "window") + ("s" if batch > 1 else "")
        recommended = " (train.sh)" if batch == RECOMMENDED[stage] else ""
        for precision in args.precisions:
            for attention in args.attention:
                child = [sys.executable, __file__, "--child", name, precision, attention, str(args.steps)]
                child += ["--memory_limit_gib", str(args.memory_limit_gib)]
                run = subprocess.run(child, capture_output=True, text=True, check=False)
                cells = [stage, f"{batch} {unit}{recommended}", f"{sequences} x {LENGTH}", precision,
                         "on" if checkpointing else "off"]  # fmt: skip
                if run.returncode:
                    print(run.stderr.strip().splitlines()[-1], file=sys.stderr)
                    cells += [attention, f"failed (over {args.memory_limit_gib:g} GiB?)", "–", "–"]
                else:
                    measured = json.loads(run.stdout.strip().splitlines()[-1])
                    results.append({"config": name, "precision": precision, "attention": attention, **measured})
                    cells += [
                        f"{attention} ({measured['kernel']})",
                        f"{measured['peak_MiB']:,.0f}",
                        f"{measured['states_MiB']:,.0f}",
                        f"{measured['step_s']:.1f}",
                    ]
                print("| " + " | ".join(cells) + " |", flush=True)
    if results:
        print(
            f"\nbaseline (resident before the model): {min(r['baseline_MiB'] for r in results):.0f}-"
            f"{max(r['baseline_MiB'] for r in results):.0f} MiB; parameters: "
            + ", ".join(sorted({f"{r['parameters']:,}" for r in results}))
        )
    if args.output_json:
        with open(args.output_json, "w") as output:
            json.dump(results, output, indent=2)


if __name__ == "__main__":
    main()
