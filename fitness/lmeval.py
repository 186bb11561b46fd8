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
``loglikelihood`` / ``loglikelihood_rolling`` / ``generate_until`` requests with this package's
batched scorers on the live (merged) model. ``params.metric`` picks the per-document metric
(default: the task's first); ``acc``, ``acc_norm`` and ``exact_match`` are in [0, 1] and can be raced.
"""

from __future__ import annotations

from pathlib import Path

from evomerge.errors import ConfigError
from evomerge.fitness.config import TaskConfig
from evomerge.fitness.scorers.base import Example, ScoreBatch, Scorer, forced_logprobs, pad_id
from evomerge.fitness.scorers.choice import continuation_logliks
from evomerge.fitness.scorers.generation import greedy_generate
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


def make_lm(model, tokenizer, batch_size: int = 16):
    """An ``lm_eval.api.model.LM`` over an in-memory HF-style causal LM."""
    _, LM, _, _ = _lm_eval()

    class InMemoryLM(LM):
        def __init__(self):
            super().__init__()
            self.model, self.tok, self.batch_size = model, tokenizer, batch_size
            self.tokens = 0

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            pairs = [tuple(r.args) for r in requests]
            lls, _, greedy, tokens = continuation_logliks(self.model, self.tok, pairs, batch_size=self.batch_size)
            self.tokens += tokens
            return list(zip(lls, greedy))

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            seqs = [list(self.tok(r.args[0])["input_ids"]) for r in requests]
            spans = [(1, len(s)) for s in seqs]
            logps, _, tokens = forced_logprobs(
                self.model, seqs, spans, batch_size=self.batch_size, pad=pad_id(self.tok)
            )
            self.tokens += tokens
            import torch

            return [float(lp.gather(1, torch.tensor(s[1:])[:, None]).sum()) for lp, s in zip(logps, seqs)]

        def generate_until(self, requests, disable_tqdm: bool = False):
            out = []
            for r in requests:  # grouping by kwargs would batch more; harness tasks rarely mix them
                context, kwargs = r.args
                until = kwargs.get("until") or []
                until = [until] if isinstance(until, str) else list(until)
                max_new = int(kwargs.get("max_gen_toks", 256))
                texts, _, tokens = greedy_generate(
                    self.model,
                    self.tok,
                    [list(self.tok(context)["input_ids"])],
                    max_new_tokens=max_new,
                    stop=until,
                    batch_size=1,
                )
                self.tokens += tokens
                out.append(texts[0])
            return out

    return InMemoryLM()


class LMEvalScorer(Scorer):
    def __init__(self, cfg: TaskConfig, task_name: str, task_manager, metric: str):
        super().__init__(cfg.scorer)
        self.task_name, self.tm, self.metric = task_name, task_manager, metric
        self.bounded = metric in BOUNDED_METRICS

    def score(self, model, tokenizer, examples, *, batch_size=16):
        simple_evaluate, _, _, _ = _lm_eval()
        lm = make_lm(model, tokenizer, batch_size)
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
