"""Who can act in a played episode (``vln-clip rollout``, the demo): the names, in one place.

:mod:`vln_clip.rollout` defines the actors themselves; the command line needs their names for
``--policy`` at start-up, before torch is loaded, so the names and the rule that picks who acts
live in this light module, which both import.
"""

from __future__ import annotations

from vln_clip.errors import DataError

#: actors that can take a step for a person (what Enter does in interactive mode)
HELPERS = ("agent", "teacher", "random")
#: what ``--policy`` accepts: a person, or one of the helpers
POLICIES = ("human",) + HELPERS


def resolve_policy(policy: str | None, interactive: bool, checkpoint: str | None) -> tuple[str, bool, str]:
    """``(who acts, interactive?, the helper)`` for a ``--policy`` choice.

    ``human`` implies interactive with the agent (given a checkpoint) or the teacher as the
    helper; no policy means the agent with a checkpoint, else the teacher.
    """
    if policy is not None and policy not in POLICIES:
        raise DataError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
    if policy == "human":
        return "human", True, "agent" if checkpoint else "teacher"
    if policy is None:
        policy = "agent" if checkpoint else "teacher"
    if policy == "agent" and not checkpoint:
        raise DataError("--policy agent needs --checkpoint CKPT (a follower checkpoint from `vln-clip train`); "
                        "without one use --policy teacher, random or human")
    return policy, interactive, policy
