"""evomerge: evolutionary optimisation of model-merging recipes.

Data flows one way through the sub-packages:
config -> pool -> space (genome <-> recipe) -> drivers.ask -> scheduler -> evaluator
(merge in place -> fitness) -> drivers.tell -> runs (log, checkpoints, Pareto) -> export / report.
"""

__version__ = "0.1.0"
