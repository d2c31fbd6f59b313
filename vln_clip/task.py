"""The fixed numbers of the R2R task, one home for each (metrics, environments, maps, CLI).

* :data:`SUCCESS_DISTANCE`: an episode succeeds when the agent stops less than 3 m from the
  goal (Anderson et al. 2018); the same radius is the success circle on the top-down maps.
* :data:`MAX_ACTIONS`: EnvDrop's episode length, 35 panoramic actions before it is cut.
"""

from __future__ import annotations

SUCCESS_DISTANCE = 3.0  # metres
MAX_ACTIONS = 35
