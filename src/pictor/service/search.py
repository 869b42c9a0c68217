"""Search and repair: the candidates of each returned image made and scored as the plan's `Search` says
(service/validation), the best kept, and near misses repaired where the model's scene reader proposes how.

Candidate j of image i has seed base + i + j*n: candidate 0 is what a request without candidates returns. A budgeted
search (complexity=high) makes one cheap candidate per open image per round and stops an image at its first pass;
when none passed, repair a of image i (seed base + i + (candidates + a)*n) repaints the one wrong object of its best
repairable candidate, and is returned only if it passes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

from PIL import Image

from pictor.engine.protocol import EngineRequest, EngineResult
from pictor.engine.scene import Repair
from pictor.service import validation
from pictor.service.cpu_pool import run_on_cores
from pictor.service.masks import keep_outside_mask
from pictor.service.model_runs import ModelRuns
from pictor.service.planning import Plan


def engine_request(plan: Plan, seed: int) -> EngineRequest:
    return EngineRequest(task=plan.task, prompt=plan.model_prompt, width=plan.width, height=plan.height, seed=seed,
                         images=plan.sources, mask=plan.mask, steps=plan.steps,
                         transparent=plan.job.background == "transparent")


def repair_request(plan: Plan, source: Image.Image, fix: Repair, seed: int, steps: int) -> EngineRequest:
    """The inpainting run of a repair: `fix`'s box of `source`, repainted."""
    return EngineRequest(task="inpaint", prompt=fix.prompt, width=plan.width, height=plan.height, seed=seed,
                         images=[source], mask=fix.mask(source.size), steps=steps,
                         transparent=plan.job.background == "transparent")


@dataclass
class Candidate:
    result: EngineResult
    verdict: validation.Verdict
    steps: int
    cache: str  # "hit" / "miss" / "" (not cacheable)


@dataclass
class SearchOutcome:
    """The returned candidate of each image, its extension fields, and what the search spent."""

    results: list[EngineResult] = field(default_factory=list)
    extras: list[dict] = field(default_factory=list)
    cache_states: list[str] | None = field(default_factory=list)
    runs: int = 0
    steps_run: int = 0
    made: int = 0  # candidates made for the image that needed the most
    scoring_ms: float = 0.0
    model_seconds: float = 0.0


@dataclass
class _Round:
    """Runs of one round: (image index, request), and for repairs the (source, mask) each is kept to."""

    wanted: list[tuple[int, EngineRequest]]
    first: bool = False
    kept_to: list[tuple[Image.Image, Image.Image]] | None = None


class CandidateSearch:
    """One request's search (see the module's docstring)."""

    def __init__(self, plan: Plan, runs: ModelRuns, base_seed: int):
        self.plan, self.runs, self.base_seed = plan, runs, base_seed
        self.search = plan.search or validation.Search(plan.candidates, plan.steps, plan.steps,
                                                       plan.candidates * plan.steps)
        self.validator = plan.validator or validation.UnavailableValidator()
        self.outcome = SearchOutcome()
        n = plan.job.n
        self.made: list[list[Candidate]] = [[] for _ in range(n)]
        self.spent = [0] * n

    async def run(self) -> SearchOutcome:
        plan, search, n = self.plan, self.search, self.plan.job.n
        open_images, j = list(range(n)), 0
        while open_images and j < search.candidates:
            rounds = [j] if search.early_stop else list(range(j, search.candidates))
            wanted = [(i, replace(engine_request(plan, self.base_seed + i + jj * n), steps=search.candidate_steps))
                      for jj in rounds for i in open_images]
            for (i, _), candidate in zip(wanted, await self._run_round(_Round(wanted, first=j == 0))):
                self.made[i].append(candidate)
            j += len(rounds)
            if search.early_stop:
                open_images = [i for i in open_images if self.made[i][-1].verdict.status != "passed"]
        repaired, tried = await self._repairs()
        for i in range(n):
            self._keep_best(i, repaired.get(i), tried[i])
        if "" in (self.outcome.cache_states or []):
            self.outcome.cache_states = None
        return self.outcome

    async def _run_round(self, round_: _Round) -> list[Candidate]:
        """The round's runs made and scored (repairs: kept to their mask first)."""
        outcome, steps = self.outcome, self.plan.steps
        requests = [request for _, request in round_.wanted]
        results, states = await self.runs.make(requests, round_.first, cacheable=round_.kept_to is None)
        outcome.model_seconds = max([outcome.model_seconds, *(r.model_seconds for r in results)])
        for (image, request), state in zip(round_.wanted, states):
            if state != "hit":
                outcome.runs += 1
                outcome.steps_run += request.steps or steps
                self.spent[image] += request.steps or steps
        if round_.kept_to is not None:
            for result, (source, mask) in zip(results, round_.kept_to):
                result.image = keep_outside_mask(result.image, source, mask)
        started = time.perf_counter()
        prompt, task = self.plan.model_prompt, self.plan.task
        verdicts = await run_on_cores(lambda: [self.validator.score(r.image, prompt, task) for r in results])
        outcome.scoring_ms += (time.perf_counter() - started) * 1000
        return [Candidate(r, v, request.steps or steps, state)
                for r, v, (_, request), state in zip(results, verdicts, round_.wanted, states)]

    async def _repairs(self) -> tuple[dict[int, tuple[int, Candidate, dict]], list[int]]:
        """Per image that no candidate passed: (the candidate repaired, the passing repair, its record); and the
        repairs tried per image."""
        plan, search, n = self.plan, self.search, self.plan.job.n
        tried = [0] * n
        pending: dict[int, tuple[int, Repair]] = {}
        for i in range(n if search.repairs else 0):
            made = self.made[i]
            if any(c.verdict.status == "passed" for c in made):
                continue
            for k in sorted(range(len(made)), key=lambda k: (-(made[k].verdict.score or 0.0), k)):
                fix = await run_on_cores(plan.reader.propose_repair, made[k].result.image, plan.model_prompt)
                if fix is not None:
                    pending[i] = (k, fix)
                    break
        repaired: dict[int, tuple[int, Candidate, dict]] = {}
        for attempt in range(search.repairs):
            if not pending:
                break
            wanted, kept_to = [], []
            for i, (k, fix) in pending.items():
                source = self.made[i][k].result.image
                seed = self.base_seed + i + (search.candidates + attempt) * n
                wanted.append((i, repair_request(plan, source, fix, seed, search.repair_steps)))
                kept_to.append((source, fix.mask(source.size)))
            for (i, request), fixed in zip(wanted, await self._run_round(_Round(wanted, kept_to=kept_to))):
                tried[i] += 1
                if fixed.verdict.status != "passed":
                    continue
                k, fix = pending.pop(i)
                candidate = self.made[i][k]
                fixed.result.seed = candidate.result.seed  # remakes the candidate; the record says the rest
                fixed.steps = candidate.steps
                fixed.cache = candidate.cache if candidate.cache == "" else "miss"
                repaired[i] = (k, fixed, {**fix.to_dict(), "seed": request.seed, "steps": request.steps,
                                          "attempts": attempt + 1})
        return repaired, tried

    def _keep_best(self, i: int, repaired: tuple[int, Candidate, dict] | None, tried: int) -> None:
        """Image i's returned candidate (its repair, if one passed) and its `validation` extension field."""
        search, outcome, candidates = self.search, self.outcome, self.made[i]
        best = validation.choose([c.verdict for c in candidates])
        chosen = candidates[best]
        verdict = chosen.verdict.to_dict(len(candidates), best)
        if repaired is not None:
            best, chosen, repair = repaired
            verdict = chosen.verdict.to_dict(len(candidates), best)
            verdict["repair"] = repair
        verdict["steps"] = chosen.steps
        if len(candidates) > 1 or search.budgeted:
            verdict["candidate_scores"] = [None if c.verdict.score is None else round(float(c.verdict.score), 4)
                                           for c in candidates]
        if search.budgeted:
            verdict["search"] = {**search.to_dict(), "steps_spent": self.spent[i], "repairs_tried": tried}
        outcome.results.append(chosen.result)
        outcome.extras.append({"validation": verdict, "steps": chosen.steps})
        assert outcome.cache_states is not None
        outcome.cache_states.append(chosen.cache)
        outcome.made = max(outcome.made, len(candidates))
