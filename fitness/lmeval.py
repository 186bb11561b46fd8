"""lm-evaluation-harness tasks as fitness tasks (optional extra: ``pip install 'evomerge[lmeval]'``).

YAML::

    tasks:
      - name: arc
        source: {type: lmeval, task: arc_easy, include_path: my_tasks/, params: {metric: acc}}
        splits: {calibration: 200, seed: 0}

The harness task's evaluation documents (its test split, else validation) are the example pool;
our seeded calibration/validation split is drawn over document indices. ``params``: ``metric``
(default: the task's first), ``filter`` (default: its first filter pipeline); ``acc``,
``acc_norm`` and ``exact_match`` are in [0, 1] and can be raced.

**In process, at native speed.** The harness's loop (``simple_evaluate``) costs a task set-up
per call — requests rebuilt, prompts re-rendered and re-tokenised, the model re-wrapped — and
that would be paid per candidate. Instead, a :class:`HarnessTask` is built once per worker (when
the task is loaded) and does, per candidate, only what depends on the model:

1. the first time, the harness builds the requests (``Task.build_all_requests``: prompts,
   few-shot contexts with the harness's few-shot seed 1234, choices) of every document of our
   splits at once — so each document's few-shot context is what ``simple_evaluate`` over those
   documents gives — and they are kept;
2. per candidate, the requested documents' ``Instance`` objects are answered through the task's
   inference engine on the live model, one batched engine call per request kind
   (:class:`~evomerge.fitness.lmeval_requests.RequestAnswerer`, whose token ids are cached);
3. the harness's own filters and ``process_results`` turn the answers into each document's
   metric, exactly as its evaluator does.

Tested: per-document scores equal the native scorer's on the same task (generation, teacher-forced
log-likelihood, multiple choice) and the harness's ``simple_evaluate``'s; ``benchmarks/lmeval_speed.py``
times both paths.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from evomerge.errors import ConfigError
from evomerge.fitness.config import TaskConfig
from evomerge.fitness.lmeval_requests import RequestAnswerer
from evomerge.fitness.scorers.base import Example, ScoreBatch, Scorer
from evomerge.fitness.sources import resolve_path
from evomerge.fitness.task import SPLITS, Task

BOUNDED_METRICS = ("acc", "acc_norm", "exact_match", "acc_mutual_info", "f1_binary", "acc_bytes")
FEWSHOT_SEED = 1234  # simple_evaluate's default fewshot_random_seed


def lm_eval_modules():
    try:
        from lm_eval.tasks import TaskManager, get_task_dict
    except ImportError:
        raise ConfigError(
            "lmeval source: lm-evaluation-harness is not installed; pip install 'evomerge[lmeval]'"
        ) from None
    return TaskManager, get_task_dict


_MANAGERS: dict[tuple[str | None, bool], object] = {}


def task_manager(include: str | None, task: str):
    """A harness ``TaskManager`` that knows ``task``, one per process and folder: the folder's
    tasks alone when ``task`` is there (indexing lm-eval's ~15k built-in task files takes ~25 s),
    else the folder plus the built-in ones."""
    TaskManager, _ = lm_eval_modules()
    quiet = logging.getLogger("lm_eval")
    if quiet.level == logging.NOTSET:  # the harness warns about every defaulted metric setting
        quiet.setLevel(logging.ERROR)
    for defaults in [False, True] if include else [True]:
        if (include, defaults) not in _MANAGERS:
            _MANAGERS[include, defaults] = TaskManager(include_path=include, include_defaults=defaults)
        tm = _MANAGERS[include, defaults]
        if task in tm.all_tasks:
            return tm
    return None


def per_document(fn):
    """``fn(doc)`` computed once per document object: the harness renders a document's target and
    choices from Jinja templates it compiles anew on every call, and ``process_results`` asks for
    them for every candidate. The cache holds each document, so an ``id`` is never reused."""
    cache: dict[int, tuple] = {}

    def once(doc, *args, **kwargs):
        if args or kwargs:
            return fn(doc, *args, **kwargs)
        hit = cache.get(id(doc))
        if hit is None:
            hit = cache[id(doc)] = (doc, fn(doc))
        return hit[1]

    return once


class HarnessTask:
    """One harness task, its documents and their requests, kept for a whole run (one per worker)."""

    def __init__(self, task, name: str, metric: str, filter_key: str | None = None):
        self.task, self.name, self.metric = task, name, metric
        if task.get_config("num_fewshot") is None:  # what simple_evaluate does without --num_fewshot
            task.set_config(key="num_fewshot", value=0)
        self.docs = list(task.eval_docs)
        for method in ("doc_to_text", "doc_to_target", "doc_to_choice"):
            setattr(task, method, per_document(getattr(task, method)))
        ensembles = list(getattr(task, "_filters", None) or ())  # lm-eval keeps its pipelines there
        if not ensembles:
            raise ConfigError(f"lm-eval task {name!r} has no filter pipeline")
        keys = [e.name for e in ensembles]
        if filter_key is not None and filter_key not in keys:
            raise ConfigError(f"lm-eval task {name!r} has filters {', '.join(keys)}, not {filter_key!r}")
        self.filters, self.filter_key = ensembles, filter_key or keys[0]
        self.wanted: list[int] = []  # the documents of our splits: built together on first use
        self.answerer = RequestAnswerer(name)
        self._requests: dict[int, list] = {}

    def requests(self, docs: list[int]) -> dict[int, list]:
        """Each document's ``Instance`` objects, sorted by ``idx``; built on first use."""
        new = sorted(set(docs) - self._requests.keys())
        if new:
            self._build(sorted(set(new) | (set(self.wanted) - self._requests.keys())))
        return {d: self._requests[d] for d in docs}

    def _build(self, new: list[int]) -> None:
        t = self.task
        t.set_fewshot_seed(seed=FEWSHOT_SEED)  # one build, one seed: deterministic few-shot contexts
        t.build_all_requests(samples=new, rank=0, world_size=1, cache_requests=False)
        by_id = defaultdict(list)
        for inst in t.instances:
            by_id[inst.doc_id].append(inst)

        def numbered(key) -> bool:
            return all(by_id.get(key(k, d)) and by_id[key(k, d)][0].doc == self.docs[d] for k, d in enumerate(new))

        # lm-eval 0.4.x numbers the selected documents 0..k-1 in source order, not by their index
        if numbered(lambda k, d: k):
            key = lambda k, d: k  # noqa: E731
        elif numbered(lambda k, d: d):
            key = lambda k, d: d  # noqa: E731
        else:  # pragma: no cover - a harness version that numbers documents some third way
            raise RuntimeError(f"lm-eval task {self.name!r}: cannot match built requests to documents")
        for k, d in enumerate(new):
            self._requests[d] = sorted(by_id[key(k, d)], key=lambda inst: inst.idx)

    def score(self, engine, docs: list[int], *, batch_size: int = 16) -> tuple[list[float], int, list | None]:
        """``(per-document metric, tokens, generated texts or None)``, in the order of ``docs``."""
        per_doc = self.requests(docs)
        instances = [inst for d in docs for inst in per_doc[d]]
        by_kind: dict[str, list] = defaultdict(list)
        for inst in instances:
            inst.resps, inst.filtered_resps = [], {}
            by_kind[inst.request_type].append(inst)
        tokens = 0
        for kind, insts in by_kind.items():
            # greedy decoding: a request repeated k times gets its one answer k times
            results, n = self.answerer.answer(engine, kind, [i.args for i in insts], batch_size=batch_size)
            tokens += n
            for inst, res in zip(insts, results):
                inst.resps.extend([res] * (inst.repeats or 1))
        for ensemble in self.filters:
            ensemble.apply(instances)
        scores = []
        for d in docs:
            metrics = self.task.process_results(self.docs[d], [i.filtered_resps[self.filter_key] for i in per_doc[d]])
            value = metrics.get(self.metric)
            if not isinstance(value, (int, float)):
                have = ", ".join(k for k, v in metrics.items() if isinstance(v, (int, float)))
                raise ConfigError(
                    f"lm-eval task {self.name!r}: no per-document number for metric {self.metric!r}; has {have}"
                )
            scores.append(float(value))
        texts = [str(i.resps[0]) for i in instances] if set(by_kind) == {"generate_until"} else None
        return scores, tokens, texts


class LMEvalScorer(Scorer):
    def __init__(self, cfg: TaskConfig, harness: HarnessTask):
        super().__init__(cfg.scorer)
        self.harness = harness
        self.bounded = harness.metric in BOUNDED_METRICS

    def score(self, engine, examples, *, batch_size=16):
        scores, tokens, texts = self.harness.score(engine, [int(e.id) for e in examples], batch_size=batch_size)
        return ScoreBatch(scores=scores, tokens=tokens, outputs=texts)


def load_lmeval_task(cfg: TaskConfig, *, base_dir: Path | None = None):
    _, get_task_dict = lm_eval_modules()
    src = cfg.source
    include = str(resolve_path(src.include_path, base_dir)) if src.include_path else None
    if include and not Path(include).exists():
        raise ConfigError(f"task {cfg.name!r}: lmeval include_path not found: {include}")
    tm = task_manager(include, src.task)
    if tm is None:
        raise ConfigError(
            f"task {cfg.name!r}: unknown lm-eval task {src.task!r}" + (f" (include_path {include})" if include else "")
        )
    harness_task = get_task_dict([src.task], tm)[src.task]
    metrics = [m["metric"] for m in harness_task.config.metric_list or []] or ["acc"]
    metric = src.params.get("metric", metrics[0])
    if metric not in metrics:
        raise ConfigError(
            f"task {cfg.name!r}: lm-eval task {src.task!r} has metrics {', '.join(metrics)}, not {metric!r}"
        )
    unknown = sorted(set(src.params) - {"metric", "filter"})
    if unknown:
        raise ConfigError(f"task {cfg.name!r}: source.params.{unknown[0]}: unknown key (known: metric, filter)")
    harness = HarnessTask(harness_task, src.task, metric, src.params.get("filter"))
    pool = [Example(id=str(i), prompt="") for i in range(len(harness.docs))]
    task = Task(cfg, pool, f"lm-eval task {src.task!r}", scorer=LMEvalScorer(cfg, harness))
    harness.wanted = [int(e.id) for s in SPLITS if task.split_size(s) for e in task.examples(s)]
    return task
