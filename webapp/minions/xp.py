"""Minion levels from XP.

Each level costs 100 XP more than the one before, so level n starts at the
triangular number ``100 * n * (n - 1) / 2`` XP: level 1 at 0, 2 at 100, 3 at 300,
4 at 600, 5 at 1000. Solving that for n gives
``level = floor((1 + sqrt(1 + 8 * xp / 100)) / 2)``, computed here in integers.
"""
from __future__ import annotations

from math import isqrt

XP_STEP = 100


def xp_for_level(level: int) -> int:
    """The XP at which a minion reaches this level."""
    return XP_STEP * level * (level - 1) // 2


def level_for_xp(xp: int) -> int:
    if xp < 0:
        raise ValueError("xp cannot be negative")
    # Flooring 8 * xp / 100 first changes nothing: the square root is compared with integers.
    return (1 + isqrt(1 + 8 * xp // XP_STEP)) // 2
