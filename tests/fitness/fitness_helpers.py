"""Import-path targets for the fitness tests (``scorer: {type: callable, fn: "fitness_helpers:…"}``)."""


def lookup_scores(model, tokenizer, examples, **params):
    """A simulated scorer: ``model`` is a dict id -> score (a candidate's true per-example scores)."""
    model.setdefault("_calls", 0)
    model["_calls"] += len(examples)
    return [model[ex.id] for ex in examples]


def last_digit(text):
    """An answer extractor: the last digit in the text, or None."""
    digits = [c for c in text if c.isdigit()]
    return digits[-1] if digits else None
