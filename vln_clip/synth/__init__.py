"""A synthetic Matterport: procedural houses written in the real data formats.

``generate_world(out_dir, houses=6, seed=0)`` writes connectivity graphs, skybox cube faces,
scene descriptions and R2R / RxR episode files that the simulator, feature extraction,
training and evaluation read exactly as they read Matterport3D, R2R and RxR. See
docs/synthetic.md for the layout and the conventions.
"""

from .generate import GENERATOR_VERSION, SynthConfig, WorldPaths, generate_world, scan_id, split_scans

__all__ = ["GENERATOR_VERSION", "SynthConfig", "WorldPaths", "generate_world", "scan_id", "split_scans"]
