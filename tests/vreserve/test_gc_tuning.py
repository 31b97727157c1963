"""Start-up objects frozen, young passes spaced out (vreserve/gc_tuning.py)."""
from __future__ import annotations

import gc

from vreserve.gc_tuning import YOUNG_THRESHOLD, freeze_startup_objects


def test_freeze_moves_what_exists_to_the_permanent_generation_and_spaces_young_passes():
    before = gc.get_threshold()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() > 1000 and gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
