"""Rank-sweep experiments: tasks (``tasks``), the resumable sweep (``sweep``), the intrinsic-rank
analysis (``analysis``) and figures (``plots``)."""
