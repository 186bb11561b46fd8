"""DARE (Yu et al. 2024): drop each task-vector entry with probability ``1 − density`` and rescale
the survivors, then task arithmetic (``dare_linear``) or TIES sign election (``dare_ties``).

Rescale: mergekit keeps each tensor's L1 norm (default, ``options.rescale_mode: l1``); the paper
divides by the keep probability ``1/density`` (``rescale_mode: inverse_p``)."""

from evomerge.merge.methods.task_arithmetic import gta_method

_OPTIONS = ("rescale_mode",)

gta_method(
    "dare_linear",
    sparsification="random",
    consensus=False,
    normalize=False,
    rescale=True,
    options=_OPTIONS,
    doc="Random drop and rescale, then task arithmetic.",
)
gta_method(
    "dare_ties",
    sparsification="random",
    consensus=True,
    normalize=False,
    rescale=True,
    options=_OPTIONS,
    doc="Random drop and rescale, then TIES sign election.",
)
