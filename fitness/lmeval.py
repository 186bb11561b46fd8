"""lm-evaluation-harness tasks as fitness tasks (optional extra: ``pip install 'evomerge[lmeval]'``).

YAML::

    tasks:
      - name: arc
        source: {type: lmeval, task: arc_easy, include_path: my_tasks/, params: {metric: acc}}
        splits: {calibration: 200, seed: 0}

The harness task's evaluation documents (its test split, else validation) are the example pool;
our seeded calibration/validation split is drawn over document indices and passed to the harness
as ``samples={task: [doc indices]}``, so only those documents are scored and each score comes back
with its ``doc_id``. The model is not reloaded: :class:`InMemoryLM` answers the harness's
``loglikelihood`` / ``loglikelihood_rolling`` / ``generate_until`` requests through the task's
inference engine on the live (merged) model, batched (generation requests grouped by their stop
strings and length). ``params.metric`` picks the per-document metric
(default: the task's first); ``acc``, ``acc_norm`` and ``exact_match`` are in [0, 1] and can be raced.
"""

from __future__ import annotations

from pathlib import Path

from evomerge.errors import ConfigError
from evomerge.fitness.config import TaskConfig
from evomerge.fitness.scorers.base import Example, ScoreBatch, Scorer
from evomerge.fitness.scorers.choice import continuation_logliks
from evomerge.fitness.sources import resolve_path

BOUNDED_METRICS = ("acc", "acc_norm", "exact_match", "acc_mutual_info", "f1_binary")


def _lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval import simple_evaluate
        from lm_eval.api.model import LM
        from lm_eval.tasks import TaskManager, get_task_dict
    except ImportError:
        raise ConfigError(
            "lmeval source: lm-evaluation-harness is not installed; pip install 'evomerge[lmeval]'"
        ) from None
    return simple_evaluate, LM, TaskManager, get_task_dict


def make_lm(engine, batch_size: int = 16):
    """An ``lm_eval.api.model.LM`` answering through an inference engine (on the live model)."""
    _, LM, _, _ = _lm_eval()

    class InMemoryLM(LM):
        def __init__(self):
            super().__init__()
            self.engine, self.tok, self.batch_size = engine, engine.tokenizer, batch_size
            self.tokens = 0

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            out = continuation_logliks(self.engine, [tuple(r.args) for r in requests], batch_size=self.batch_size)
            self.tokens += out.tokens
            return [(item.total, item.greedy) for item in out.items]

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            seqs = [list(self.tok(r.args[0])["input_ids"]) for r in requests]
            out = self.engine.loglikelihood([(s[:1], s[1:]) for s in seqs], batch_size=self.batch_size)
            self.tokens += out.tokens
            return [item.total for item in out.items]

        def generate_until(self, requests, disable_tqdm: bool = False):
            groups: dict[tuple, list[int]] = {}  # requests with the same stop strings and length, batched
            prompts, texts = [], [None] * len(requests)
            for i, r in enumerate(requests):
                context, kwargs = r.args
                until = kwargs.get("until") or []
                until = (until,) if isinstance(until, str) else tuple(until)
                groups.setdefault((until, int(kwargs.get("max_gen_toks", 256))), []).append(i)
                prompts.append(list(self.tok(context)["input_ids"]))
            for (until, max_new), idx in groups.items():
                out = self.engine.generate(
                    [prompts[i] for i in idx], max_new_tokens=max_new, stop_strings=until, batch_size=self.batch_size
                )
                self.tokens += out.tokens
                for i, text in zip(idx, out.texts):
                    texts[i] = text
            return texts

    return InMemoryLM()


class LMEvalScorer(Scorer):
    def __init__(self, cfg: TaskConfig, task_name: str, task_manager, metric: str):
        super().__init__(cfg.scorer)
        self.task_name, self.tm, self.metric = task_name, task_manager, metric
        self.bounded = metric in BOUNDED_METRICS

    def score(self, engine, examples, *, batch_size=16):
        simple_evaluate, _, _, _ = _lm_eval()
        lm = make_lm(engine, batch_size)
        docs = [int(e.id) for e in examples]
        # lm-eval 0.4.x walks the selected docs in source order but labels the k-th with
        # samples[k]: only a sorted list keeps each doc_id on its own document.
        out = simple_evaluate(
            model=lm,
            tasks=[self.task_name],
            task_manager=self.tm,
            samples={self.task_name: sorted(docs)},
            log_samples=True,
            bootstrap_iters=0,
            verbosity="ERROR",
        )
        by_doc = {}
        for rec in out["samples"][self.task_name]:
            if self.metric not in rec:
                raise ConfigError(
                    f"lmeval task {self.task_name!r}: no per-document metric {self.metric!r}; "
                    f"has {', '.join(k for k in rec if isinstance(rec[k], (int, float)) and k != 'doc_id')}"
                )
            by_doc[int(rec["doc_id"])] = float(rec[self.metric])
        return ScoreBatch(scores=[by_doc[d] for d in docs], tokens=lm.tokens)


def load_lmeval_task(cfg: TaskConfig, *, base_dir: Path | None = None):
    from evomerge.fitness.task import Task

    _, _, TaskManager, get_task_dict = _lm_eval()
    src = cfg.source
    include = str(resolve_path(src.include_path, base_dir)) if src.include_path else None
    if include and not Path(include).exists():
        raise ConfigError(f"task {cfg.name!r}: lmeval include_path not found: {include}")
    tm = TaskManager(include_path=include, verbosity="ERROR")
    if src.task not in tm.all_tasks:
        raise ConfigError(
            f"task {cfg.name!r}: unknown lm-eval task {src.task!r}" + (f" (include_path {include})" if include else "")
        )
    harness_task = get_task_dict([src.task], tm)[src.task]
    docs = list(harness_task.eval_docs)
    metrics = [m["metric"] for m in harness_task.config.metric_list or []] or ["acc"]
    metric = src.params.get("metric", metrics[0])
    if metric not in metrics:
        raise ConfigError(
            f"task {cfg.name!r}: lm-eval task {src.task!r} has metrics {', '.join(metrics)}, not {metric!r}"
        )
    pool = [Example(id=str(i), prompt="") for i in range(len(docs))]
    return Task(cfg, pool, f"lm-eval task {src.task!r}", scorer=LMEvalScorer(cfg, src.task, tm, metric))
