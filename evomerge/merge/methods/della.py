"""DELLA (Deep et al. 2024): MagPrune — within each row, keep probability rises linearly with the
magnitude rank from ``density − epsilon`` to ``density + epsilon``; rescale survivors; then TIES
sign election (``della``, normalised) or task arithmetic (``della_linear``).

Rescale: mergekit keeps each tensor's L1 norm (default, ``options.rescale_mode: l1``); the paper
divides each survivor by its own keep probability ``p_i`` (``rescale_mode: inverse_p``)."""

from evomerge.merge.methods.task_arithmetic import gta_method

_OPTIONS = ("rescale_mode",)

gta_method(
    "della",
    sparsification="rank",
    consensus=True,
    normalize=True,
    rescale=True,
    extra_params=("epsilon",),
    options=_OPTIONS,
    doc="Rank-magnitude sampling, then TIES sign election.",
)
gta_method(
    "della_linear",
    sparsification="rank",
    consensus=False,
    normalize=False,
    rescale=True,
    extra_params=("epsilon",),
    options=_OPTIONS,
    doc="Rank-magnitude sampling, then task arithmetic.",
)
