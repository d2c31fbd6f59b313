"""Pictures of what an agent does: top-down maps, view strips, GIFs and HTML reports.

The top-down map itself is drawn by :func:`vln_clip.envs.topdown.draw_topdown` (the same
picture the environments return for ``render_mode="rgb_array"``); this package composes it
over the steps of a rollout and packs everything into files a person can open.
"""

from .images import encode_gif, encode_png, write_gif, write_png
from .strips import view_strip

__all__ = ["encode_png", "encode_gif", "write_png", "write_gif", "view_strip"]
