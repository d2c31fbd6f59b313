"""vln-clip: vision-and-language navigation with CLIP visual encoders.

The shared core (this package) holds what every task reuses: navigation graphs,
episode formats, tokenizers, the encoder library, configs and the command line.
The component packages ``vln_clip.envs``, ``vln_clip.agents``, ``vln_clip.features``
and ``vln_clip.eval`` live in the repository's top-level folders of the same name.
"""

__version__ = "0.1.0"
