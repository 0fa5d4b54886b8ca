"""Rank-sweep experiments, one idea per module.

- ``tasks``: one run = one (task, method, rank, targets, seed) fine-tuning of the base GPT;
- ``sweep``: expand a config into runs, execute them on any Executor, store, resume;
- ``results``: the sweep folder's file names, the task order, the one reader and writer of results;
- ``analysis``: spectra, subspace similarity and amplification of a weight update;
- ``summary``, ``report``, ``figures`` (drawn with ``drawing``): tables, text and figures from the
  results alone; ``plots`` gathers their names under the path the notebooks import.
"""
