"""Imported last by the report's fork server: the objects its imports made (matplotlib's, shap's, MLflow's, pandas')
leave the garbage collector's sight (:func:`gc.freeze`), in the server and in every process forked from it.

Each full collection in a report process would otherwise scan them all again: about a sixth of the CPU time of
drawing a section's charts.
"""

from __future__ import annotations

import gc

__all__: list[str] = []

gc.freeze()
