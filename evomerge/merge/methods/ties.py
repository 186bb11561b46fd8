"""TIES-merging (Yadav et al. 2023): trim each task vector to its top-``density`` magnitudes, elect
a sign per entry by the weighted sum, average the agreeing entries (``normalize: true``).

mergekit trims per tensor (default, ``options.ties_scope: tensor``); the paper trims over the
whole flattened model (``ties_scope: model``: the engine supplies one threshold per model from
:func:`evomerge.merge.methods.thresholds.global_trim_thresholds`)."""

from evomerge.merge.methods.task_arithmetic import gta_method

gta_method(
    "ties",
    sparsification="magnitude",
    consensus=True,
    normalize=True,
    rescale=False,
    options=("ties_scope",),
    doc="Trim, elect sign, disjoint mean.",
)
