"""The embedded model's benchmark: prompt adherence, edits and inpainting, judged by the renderer's
world rather than by eye.

Categories follow GenEval (single object, two objects, counting, colours, position, colour
binding), plus the absolute-position prompts of this world, edit success with preservation
outside the edited object (PSNR), inpainting, and the held-out (shape, colour) pairs apart from
the seen ones. A case passes only if the detected scene has exactly the objects asked for.
"""

from __future__ import annotations

import math
import random
import resource
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pictor.embedded.grammar import (
    RELATION_WORDS,
    ObjectSpec,
    Relation,
    SceneSpec,
    instruct,
    object_phrase,
)
from pictor.embedded.judge import DetectedObject, Detection, background_colours, detect
from pictor.embedded.render import render
from pictor.embedded.world import (
    CELLS,
    COLOURS,
    HELD_OUT_COMBINATIONS,
    RELATIONS,
    SHAPES,
    Background,
    Scene,
    SceneObject,
    WorldConfig,
    apply_edit,
    relation_holds,
    sample_edit,
    sample_scene,
    visible_colours,
)


@dataclass
class Case:
    category: str
    prompt: str
    spec: SceneSpec


def _plain(rng: random.Random) -> Background:
    return Background((rng.choice(("white", "white", "black", "gray")),))


def _colour_on(rng: random.Random, background: Background, exclude: tuple[str, ...] = ()) -> str:
    return rng.choice([c for c in visible_colours(background) if c not in exclude])


def generation_cases(seed: int = 0, per_category: int = 50, max_count: int = 4) -> list[Case]:
    """A fixed prompt set per category; the background is always said, so it is judged too."""
    rng = random.Random(seed)
    cases: list[Case] = []

    def add(category: str, objects: list[ObjectSpec], background: Background, relation=None,
            text: str | None = None) -> None:
        spec = SceneSpec(tuple(objects), relation, background)
        colour = background.colours[0]
        prompt = (text or _list_text(rng, objects)) + f" on a {colour} background"
        cases.append(Case(category, prompt, spec))

    for _ in range(per_category):
        bg = _plain(rng)
        add("single_object", [ObjectSpec(rng.choice(SHAPES))], bg)
        bg = _plain(rng)
        a, b = rng.sample(SHAPES, 2)
        add("two_objects", [ObjectSpec(a), ObjectSpec(b)], bg)
        bg = _plain(rng)
        n = rng.randint(2, max_count)
        shape, colour = rng.choice(SHAPES), _colour_on(rng, bg)
        group = [ObjectSpec(shape, colour)] * n
        add("counting", group, bg, text=object_phrase(rng, group[0], n))
        bg = _plain(rng)
        shape, colour = _seen_pair(rng, bg)
        add("colours", [ObjectSpec(shape, colour)], bg)
        bg = _plain(rng)
        a, b = rng.sample(SHAPES, 2)
        relation = rng.choice(RELATIONS)
        objs = [ObjectSpec(a, _colour_on(rng, bg)), ObjectSpec(b, _colour_on(rng, bg))]
        text = f"{object_phrase(rng, objs[0]).removeprefix('one ')} {RELATION_WORDS[relation][0]} " \
               f"{object_phrase(rng, objs[1]).removeprefix('one ')}"
        add("position", objs, bg, Relation(0, relation, 1), text=text)
        bg = _plain(rng)
        (a, ca), (b, cb) = _seen_pair(rng, bg), _seen_pair(rng, bg)
        while b == a or cb == ca:
            b, cb = _seen_pair(rng, bg)
        add("colour_binding", [ObjectSpec(a, ca), ObjectSpec(b, cb)], bg)
        bg = _plain(rng)
        shape, colour = _seen_pair(rng, bg)
        add("single_object_attributes", [ObjectSpec(shape, colour, cell=rng.choice(CELLS))], bg)
    for shape, colour in sorted(HELD_OUT_COMBINATIONS):
        for _ in range(max(1, per_category // len(HELD_OUT_COMBINATIONS))):
            bg = _plain(rng)
            if colour in visible_colours(bg):
                add("held_out_colours", [ObjectSpec(shape, colour)], bg)
    return cases


def _seen_pair(rng: random.Random, background: Background) -> tuple[str, str]:
    while True:
        pair = (rng.choice(SHAPES), _colour_on(rng, background))
        if pair not in HELD_OUT_COMBINATIONS:
            return pair


def _list_text(rng: random.Random, objects: list[ObjectSpec]) -> str:
    return " and ".join(object_phrase(rng, o).removeprefix("one ") for o in objects)


# ---- judging -----------------------------------------------------------------------------------


def _object_ok(spec: ObjectSpec, found: DetectedObject) -> bool:
    return (spec.shape == found.shape and spec.colour in (None, found.colour)
            and spec.cell in (None, found.cell) and spec.size in (None, found.size))


def _assignments(specs: tuple[ObjectSpec, ...], found: list[DetectedObject]):
    """Every way to give each spec its own detected object (scenes hold at most four)."""
    if not specs:
        yield []
        return
    for i, obj in enumerate(found):
        if _object_ok(specs[0], obj):
            for rest in _assignments(specs[1:], found[:i] + found[i + 1:]):
                yield [obj, *rest]


def spec_satisfied(spec: SceneSpec, found: list[DetectedObject]) -> bool:
    """Exactly the objects asked for, each with its attributes, and the relation if one is said."""
    if len(found) != len(spec.objects):
        return False
    for assignment in _assignments(spec.objects, found):
        if spec.relation is None:
            return True
        a, b = assignment[spec.relation.subject], assignment[spec.relation.reference]
        if _centroid_relation(a, spec.relation.relation, b):
            return True
    return False


def _centroid_relation(a: DetectedObject, relation: str, b: DetectedObject) -> bool:
    (ax, ay), (bx, by) = a.centroid, b.centroid
    return {"left of": ax < bx, "right of": ax > bx, "above": ay < by, "below": ay > by}[relation]


def attribute_scores(spec: ObjectSpec, found: list[DetectedObject]) -> dict[str, bool]:
    """For one-object prompts: which of shape, colour and position came out right."""
    if len(found) != 1:
        return {"shape": False, "colour": False, "position": False}
    obj = found[0]
    return {"shape": obj.shape == spec.shape, "colour": obj.colour == spec.colour,
            "position": obj.cell == spec.cell}


# ---- edits and inpainting ----------------------------------------------------------------------


@dataclass
class EditCase:
    kind: str
    instruction: str
    source: Scene
    target: Scene
    preserve: np.ndarray  # (H, W) bool: pixels the edit must leave alone
    unsized: SceneObject | None = None  # an added object whose size the instruction leaves open


def _edited_region(source: Scene, target: Scene, resolution: int) -> np.ndarray:
    before, after = render(source, resolution), render(target, resolution)
    changed = np.abs(before.image.astype(int) - after.image.astype(int)).sum(-1) > 0
    if source.background != target.background:
        # A new background: what must stay are the objects themselves.
        covered = sum((m > 0.99).astype(int) for m in after.masks) > 0
        return ~covered
    from scipy import ndimage

    return ndimage.binary_dilation(changed, iterations=2)


def edit_cases(seed: int = 0, count: int = 120, max_objects: int = 2, resolution: int = 64) -> list[EditCase]:
    rng = random.Random(seed + 17)
    world = WorldConfig(max_objects=max_objects, gradient_probability=0.0, held_out=HELD_OUT_COMBINATIONS)
    cases = []
    while len(cases) < count:
        scene = sample_scene(rng, world)
        edit = sample_edit(rng, scene, world)
        if edit is None:
            continue
        text, spec = instruct(scene, edit, rng)
        target = apply_edit(scene, edit)
        unsized = None
        if spec.new_object is not None and spec.new_object.size is None:
            unsized = next(o for o in target.objects if o.cell == edit.cell)
        cases.append(EditCase(edit.kind, text, scene, target, ~_edited_region(scene, target, resolution), unsized))
    return cases


def scene_matches(scene: Scene, image: np.ndarray, unsized: SceneObject | None = None) -> bool:
    """The image shows exactly `scene`: every object's shape, colour, size and cell, and its background; any
    size for `unsized`, an object whose size the request left open."""
    detection = detect(image)
    spec = SceneSpec(tuple(ObjectSpec(o.shape, o.colour, None if o is unsized else o.size, o.cell)
                           for o in scene.objects))
    return spec_satisfied(spec, detection.objects) and background_colours(detection) == scene.background.colours


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    if not where.any():
        return math.inf
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2)[where].mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def edge_rise_px(image: np.ndarray, samples: int = 48, detection: Detection | None = None) -> list[float]:
    """10-90% rise widths, in pixels, across the edges of the objects the judge finds: at edge points, the
    share of the object's colour over the background is read along the edge's normal and the distance
    between its 10% and 90% crossings measured (an exact anti-aliased edge gives about 0.8)."""
    from scipy import ndimage

    rgb = np.asarray(image, dtype=np.float32)[..., :3]
    reach = max(6.0, min(rgb.shape[:2]) / 40)  # pixels either side of the edge: room for a blurred one
    detection = detection or detect(rgb.astype(np.uint8))
    rises: list[float] = []
    for obj in detection.objects:
        x0, y0, x1, y1 = obj.box
        pad = int(reach) + 2
        ys, xs = slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad)
        bg = detection.background[ys, xs]
        direction = np.array(COLOURS[obj.colour], dtype=np.float32) - bg
        share = ((rgb[ys, xs] - bg) * direction).sum(-1) / np.maximum((direction * direction).sum(-1), 1.0)
        smooth = ndimage.gaussian_filter(share, 1.0)
        gy, gx = ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1)
        points = np.argwhere((smooth > 0.4) & (smooth < 0.6) & (np.hypot(gx, gy) > 1e-3))
        if not len(points):
            continue
        chosen = points[np.linspace(0, len(points) - 1, min(samples, len(points))).astype(int)]
        offsets = np.linspace(-reach, reach, int(reach * 8) + 1)
        for py, px in chosen:
            ny, nx = gy[py, px], gx[py, px]
            norm = math.hypot(ny, nx)
            line = ndimage.map_coordinates(share, [py + offsets * ny / norm, px + offsets * nx / norm], order=1,
                                           mode="nearest")
            low, high = np.argmax(line >= 0.1), np.argmax(line >= 0.9)
            if line[0] < 0.1 and line[-1] > 0.9 and high >= low:
                rises.append(float(offsets[high] - offsets[low]))
    return rises


# ---- the benchmark -----------------------------------------------------------------------------


@dataclass
class BenchmarkResult:
    scores: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float = 0.0
    failures: list[str] = field(default_factory=list)


Generate = Callable[[list[str], list[int]], list[Image.Image]]
Edit = Callable[[list[str], list[Image.Image], list[int]], list[Image.Image]]
Inpaint = Callable[[list[str], list[Image.Image], list[Image.Image], list[int]], list[Image.Image]]


def _batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# Prompts that ask for exactly one object: the share of their images with exactly one object is
# `one_object_exact_set`, and their objects' edges give `edge_rise_px`.
ONE_OBJECT_CATEGORIES = ("single_object", "colours", "single_object_attributes", "held_out_colours")


def run_generation(generate: Generate, cases: list[Case], batch: int = 16) -> BenchmarkResult:
    result = BenchmarkResult()
    passed: dict[str, list[bool]] = defaultdict(list)
    rises: list[float] = []
    for chunk_index, chunk in enumerate(_batched(cases, batch)):
        images = generate([c.prompt for c in chunk], [1000 + chunk_index * batch + i for i in range(len(chunk))])
        for case, image in zip(chunk, images):
            detection = detect(image)
            ok = spec_satisfied(case.spec, detection.objects)
            if case.spec.background is not None:
                ok = ok and background_colours(detection) == case.spec.background.colours
            passed[case.category].append(ok)
            if case.category == "single_object_attributes":
                for name, value in attribute_scores(case.spec.objects[0], detection.objects).items():
                    passed[f"single_object_{name}"].append(value)
            if case.category in ONE_OBJECT_CATEGORIES:
                passed["one_object_exact_set"].append(len(detection.objects) == 1)
                if len(detection.objects) == 1 and len(rises) < 2000:
                    rises += edge_rise_px(np.asarray(image.convert("RGB")), samples=16, detection=detection)
            if not ok and len(result.failures) < 40:
                found = ", ".join(f"{o.colour} {o.shape} {o.cell}" for o in detection.objects)
                result.failures.append(f"[{case.category}] {case.prompt!r} -> {found or 'nothing'}")
    for category, values in passed.items():
        result.scores[category] = sum(values) / len(values)
        result.counts[category] = len(values)
    if rises:
        result.scores["edge_rise_px"] = float(np.median(rises))
        result.counts["edge_rise_px"] = len(rises)
    geneval = ("single_object", "two_objects", "counting", "colours", "position", "colour_binding")
    present = [result.scores[c] for c in geneval if c in result.scores]
    if present:
        result.scores["geneval_overall"] = statistics.mean(present)
    return result


def run_edits(edit: Edit, cases: list[EditCase], resolution: int = 64, batch: int = 16) -> BenchmarkResult:
    result = BenchmarkResult()
    by_kind: dict[str, list[bool]] = defaultdict(list)
    psnrs: list[float] = []
    for chunk_index, chunk in enumerate(_batched(cases, batch)):
        sources = [Image.fromarray(render(c.source, resolution).image) for c in chunk]
        outputs = edit([c.instruction for c in chunk], sources,
                       [2000 + chunk_index * batch + i for i in range(len(chunk))])
        for case, out in zip(chunk, outputs):
            array = np.asarray(out.convert("RGB"))
            ok = scene_matches(case.target, array, case.unsized)
            by_kind[case.kind].append(ok)
            expected = render(case.target, resolution).image
            psnrs.append(min(psnr(array, expected, case.preserve), 99.0))
            if not ok and len(result.failures) < 40:
                found = ", ".join(f"{o.colour} {o.shape} {o.cell}" for o in detect(array).objects)
                result.failures.append(f"[edit {case.kind}] {case.instruction!r} -> {found or 'nothing'}")
    for kind, values in by_kind.items():
        result.scores[f"edit_{kind}"] = sum(values) / len(values)
        result.counts[f"edit_{kind}"] = len(values)
    everything = [v for values in by_kind.values() for v in values]
    result.scores["edit_success"] = sum(everything) / len(everything)
    result.scores["edit_psnr_outside_db"] = float(np.median(psnrs))
    return result


def run_inpaint(inpaint: Inpaint, seed: int = 0, count: int = 60, max_objects: int = 2,
                resolution: int = 64, batch: int = 16) -> BenchmarkResult:
    """Remove one object's pixels under a box mask and ask for it back by name."""
    rng = random.Random(seed + 29)
    world = WorldConfig(max_objects=max_objects, gradient_probability=0.0, held_out=HELD_OUT_COMBINATIONS)
    result = BenchmarkResult()
    ok_list, exact = [], []
    scenes = [sample_scene(rng, world) for _ in range(count)]
    for chunk_index, chunk in enumerate(_batched(scenes, batch)):
        prompts, images, masks, targets = [], [], [], []
        for scene in chunk:
            obj = scene.objects[rng.randrange(len(scene.objects))]
            # The masked cell is blanked to the background, so the object must be redrawn.
            background_only = Scene(tuple(o for o in scene.objects if o is not obj), scene.background)
            image = Image.fromarray(render(background_only, resolution).image)
            mask = Image.new("L", (resolution, resolution), 0)
            row, col = obj.cell
            mask.paste(255, (col * resolution // 3, row * resolution // 3,
                             (col + 1) * resolution // 3, (row + 1) * resolution // 3))
            prompts.append(object_phrase(rng, ObjectSpec(obj.shape, obj.colour)))
            images.append(image)
            masks.append(mask)
            targets.append((scene, obj))
        outputs = inpaint(prompts, images, masks, [3000 + chunk_index * batch + i for i in range(len(chunk))])
        for out, image, mask, (scene, obj) in zip(outputs, images, masks, targets):
            array, original = np.asarray(out.convert("RGB")), np.asarray(image)
            outside = np.asarray(mask) == 0
            exact.append(bool((array[outside] == original[outside]).all()))
            ok_list.append(scene_matches(scene, array, unsized=obj))  # the prompt names no size
    result.scores["inpaint_success"] = sum(ok_list) / len(ok_list)
    result.scores["inpaint_outside_identical"] = sum(exact) / len(exact)
    result.counts["inpaint_success"] = len(ok_list)
    return result


def time_call(fn: Callable[[], object], repeats: int = 20) -> float:
    """Median wall time of fn in milliseconds, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pipeline_callables(pipe, steps: int | None = None, resolution: int = 256) -> tuple[Generate, Edit, Inpaint]:
    """The benchmark's three calls, bound to an embedded pipeline at its default settings."""
    extra = {} if steps is None else {"num_inference_steps": steps}

    def generate(prompts, seeds):
        return pipe(prompts, seed=seeds, width=resolution, height=resolution, **extra).images

    def edit(prompts, images, seeds):
        return pipe(prompts, image=images, seed=seeds, **extra).images

    def inpaint(prompts, images, masks, seeds):
        return pipe(prompts, image=images, mask=masks, seed=seeds, **extra).images

    return generate, edit, inpaint


def realise(spec: SceneSpec, rng: random.Random) -> Scene:
    """A scene that satisfies `spec`, unsaid attributes drawn at random: the oracle generator."""
    background = spec.background or Background(("white",))
    while True:
        cells = rng.sample(CELLS, len(spec.objects))
        objects = []
        for o, cell in zip(spec.objects, cells):
            objects.append(SceneObject(o.shape, o.colour or rng.choice(visible_colours(background)),
                                       o.size or rng.choice(("small", "medium", "large")), o.cell or cell))
        if len({o.cell for o in objects}) < len(objects):
            continue
        r = spec.relation
        if r is None or relation_holds(objects[r.subject].cell, r.relation, objects[r.reference].cell):
            return Scene(tuple(objects), background)


def machine_description() -> str:
    """CPU model, cores and torch threads (or the GPU), for naming benchmark results."""
    import os
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name(0)}"
    return text


def run_benchmark(pipe, per_category: int = 50, edits: int = 120, inpaints: int = 60,
                  max_objects: int = 2, max_count: int = 4, timing_repeats: int = 20,
                  resolution: int = 256) -> dict:
    """Every score and timing of the embedded model at its default settings, images at `resolution`, as one dict."""
    generate, edit, inpaint = pipeline_callables(pipe, resolution=resolution)
    started = time.perf_counter()
    gen = run_generation(generate, generation_cases(per_category=per_category, max_count=max_count))
    ed = run_edits(edit, edit_cases(count=edits, max_objects=max_objects, resolution=resolution),
                   resolution=resolution)
    inp = run_inpaint(inpaint, count=inpaints, max_objects=max_objects, resolution=resolution)
    scored_s = time.perf_counter() - started
    source = generate(["a red circle on a white background"], [0])[0]
    timings = {
        f"generate_{resolution}px_p50_ms": time_call(lambda: generate(["a blue star in the top left"], [1]),
                                                     timing_repeats),
        f"edit_{resolution}px_p50_ms": time_call(lambda: edit(["make the circle green"], [source], [1]),
                                                 timing_repeats),
    }
    return {
        "machine": machine_description(),
        "settings": {"per_category": per_category, "edits": edits, "inpaints": inpaints,
                     "max_objects": max_objects, "resolution": resolution},
        "scores": {**gen.scores, **ed.scores, **inp.scores},
        "counts": {**gen.counts, **ed.counts, **inp.counts},
        "timings_ms": timings,
        "peak_memory_mb": peak_memory_mb(),
        "scoring_seconds": scored_s,
        "failures": gen.failures[:15] + ed.failures[:15],
    }


def steps_sweep(pipe, steps: tuple[int, ...] = (1, 2, 4, 8, 11), per_category: int = 20,
                timing_repeats: int = 10) -> dict[int, dict[str, float]]:
    """Adherence and latency against the number of sampling steps (few-step sampling, measured)."""
    cases = [c for c in generation_cases(seed=99, per_category=per_category)
             if c.category in ("single_object_attributes", "colour_binding", "position", "counting")]
    sweep = {}
    for n in steps:
        generate, _, _ = pipeline_callables(pipe, steps=n)
        result = run_generation(generate, cases)
        sweep[n] = {**{k: result.scores[k] for k in ("single_object_attributes", "colour_binding", "position",
                                                     "counting")},
                    "generate_p50_ms": time_call(lambda g=generate: g(["a red heart on the left"], [5]),
                                                 timing_repeats)}
    return sweep


def results_markdown(result: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Machine: {result['machine']}", "",
             f"Settings: {result['settings']}", "", "| metric | value | cases |", "|---|---|---|"]
    for name, value in result["scores"].items():
        lines.append(f"| {name} | {value:.3f} | {result['counts'].get(name, '')} |")
    for name, value in result["timings_ms"].items():
        lines.append(f"| {name} | {value:.1f} ms | |")
    lines.append(f"| peak_memory | {result['peak_memory_mb']:.0f} MB | |")
    if result.get("steps_sweep"):
        lines += ["", "Sampling steps against adherence and latency:", "",
                  "| steps | single object attributes | colour binding | position | counting | generate p50 |",
                  "|---|---|---|---|---|---|"]
        for n, row in result["steps_sweep"].items():
            lines.append(f"| {n} | {row['single_object_attributes']:.3f} | {row['colour_binding']:.3f} | "
                         f"{row['position']:.3f} | {row['counting']:.3f} | {row['generate_p50_ms']:.0f} ms |")
    lines += ["", "Some failures, as the judge saw them:", ""]
    lines += [f"- {f}" for f in result["failures"]]
    return "\n".join(lines) + "\n"
