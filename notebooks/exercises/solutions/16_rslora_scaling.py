"""Solution to exercise 16: rsLoRA's scaling."""
import math


def rslora_scaling(alpha, r, use_rslora):
    """alpha / r, or alpha / √r with use_rslora."""
    return alpha / (math.sqrt(r) if use_rslora else r)
