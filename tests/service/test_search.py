"""Search and repair (service/search) on the embedded model: which seeds are made, when the search stops, and what
the returned image's `validation` field says."""

from __future__ import annotations

import asyncio

from pictor.core import ImageJob, JobKind
from pictor.service.model_runs import CacheSettings, ModelRuns
from pictor.service.search import CandidateSearch, SearchOutcome


def search(built, principal, base_seed: int, **fields) -> SearchOutcome:
    async def run() -> SearchOutcome:
        plan = await built.service.prepare(ImageJob(tenant_id=principal.tenant_id, **fields), principal)
        runs = ModelRuns(plan, principal.tenant_id, built.registry.worker(plan.model), CacheSettings(None, 0, True))
        return await CandidateSearch(plan, runs, base_seed).run()

    return asyncio.run(run())


def test_best_of_k_makes_k_seeds_per_image_and_keeps_the_best(built, principal):
    outcome = search(built, principal, 100, kind=JobKind.GENERATE, prompt="two blue circles on a white background",
                     size="64x64", n=2, candidates=3, quality="low")
    assert outcome.runs == 6 and outcome.made == 3
    for i, (result, extra) in enumerate(zip(outcome.results, outcome.extras)):
        verdict = extra["validation"]
        assert len(verdict["candidate_scores"]) == 3
        assert verdict["score"] == max(verdict["candidate_scores"])
        assert result.seed == 100 + i + verdict["chosen"] * 2  # candidate j of image i: base + i + j * n


def test_a_budgeted_search_stops_at_its_first_pass_and_stays_in_its_budget(built, principal):
    outcome = search(built, principal, 7, kind=JobKind.GENERATE, prompt="a red circle on a white background",
                     size="64x64", complexity="high")
    verdict = outcome.extras[0]["validation"]
    spent = verdict["search"]["steps_spent"]
    assert spent <= verdict["search"]["budget_steps"] and spent == outcome.steps_run
    scores = verdict["candidate_scores"]
    if verdict["status"] == "passed" and "repair" not in verdict:
        assert scores[-1] == 1 and all(score < 1 for score in scores[:-1])  # stopped at the first pass


def test_an_edit_is_not_searched_when_nothing_can_score_it(built, principal):
    from .conftest import world_png

    outcome = search(built, principal, 3, kind=JobKind.EDIT, prompt="make the red circle blue",
                     images=(world_png(),), complexity="high")
    assert outcome.runs == 1 and outcome.extras[0]["validation"]["status"] == "unavailable"
