"""Solution to exercise 8: counting LoRA's trainable parameters."""


def lora_trainable_params(layer_shapes, r):
    """Σ r·(d_in + d_out) over the adapted layers; layer_shapes holds (d_out, d_in) pairs."""
    return sum(r * (d_in + d_out) for d_out, d_in in layer_shapes)
