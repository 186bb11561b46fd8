"""Runs: a config becomes a plan (:mod:`.plan`, over a :mod:`.problem`: :mod:`.merge` or
:mod:`.digits`), a run directory (:mod:`.store`, :mod:`.records`, :mod:`.checkpoint`,
:mod:`.lock`) and a search (:mod:`.session`); :mod:`.api` is what the CLI calls (``run``,
``resume``, ``validate_best``) and :mod:`.summary` what ``status`` reports."""
