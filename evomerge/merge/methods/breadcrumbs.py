"""Model Breadcrumbs (Davari & Belilovsky 2023): per tensor, drop the ``gamma`` fraction of largest
task-vector entries (outliers) and the smallest ones so that ``density`` remain; no rescale by
default. ``breadcrumbs_ties`` adds TIES sign election."""

from evomerge.merge.methods.task_arithmetic import gta_method

gta_method(
    "breadcrumbs",
    sparsification="band",
    consensus=False,
    normalize=False,
    rescale=False,
    extra_params=("gamma",),
    doc="Magnitude band, then task arithmetic.",
)
gta_method(
    "breadcrumbs_ties",
    sparsification="band",
    consensus=True,
    normalize=False,
    rescale=False,
    extra_params=("gamma",),
    doc="Magnitude band, then TIES sign election.",
)
