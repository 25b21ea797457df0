"""CLIP models: the encoder (open_clip), batching images through it, zero-shot labels, training, evaluation."""
