"""Image captioning over grid features: Transformer captioner, self-critical training, decoding."""
