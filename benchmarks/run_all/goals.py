"""The performance goals of issue 23 and LTX-2's, evaluated from the records of a run: each met, missed or not measured.

``GOALS`` is the one list of them: what is measured, how (a function of the run's JSON), the target, and the sizes
(fields of ``Sizes``) the goal is stated at. A goal is "not measured" when its section did not run or left no figure,
or when the run's sizes differ from the goal's (a CPU run always does): then the figure at the sizes that ran is shown
beside the reason, never judged against a target stated for other sizes.

    python -m benchmarks.run_all --goals RUN.json [RUN.json ...]   # the table of saved runs (later sections win)
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

STATUSES = ("met", "missed", "not measured")
_2B = ("ltx-video-2b", {})
_VAE_095 = ("ltx-video-0.9.5", {})
_DISTILLED = "ltx-video-0.9.8-2b-distilled"
TRANSFORMER_SHAPE = (17, 64, 64)  # latent frames, height, width of the transformer goals
LTX2_T2V_ROW = "ltx2 text-to-video "  # the ltx2_pipeline section's text-to-video rows start so
#: The issue's anchors for LTX-2's end-to-end goal (the ltx2_pipeline section's text-to-video total row notes them).
LTX2_ANCHORS = ("anchors to beat: SGLang on an H100: 768x512x121 8 steps in 9.52 s in bf16 (6.01 s denoising) and "
                "7.55 s in fp8. Our goal: under 4.5 s end to end on one H200 in bf16")


class NotMeasured(Exception):
    """A goal's figure is not in the run's records; the message says why."""


@dataclasses.dataclass(frozen=True)
class Measured:
    value: float
    ran: str = ""  # where the figure was taken at another size than the goal's: the size it was taken at


@dataclasses.dataclass(frozen=True)
class Goal:
    name: str
    how: str  # how the figure is computed from the records
    target: float
    op: str  # "<=" or ">="
    unit: str  # "s", "x" or "%"
    sizes: tuple[tuple[str, Any], ...]  # (Sizes field, value) the goal is stated at
    measure: Callable[[dict], Measured]  # the run's JSON -> the figure, or raises NotMeasured


@dataclasses.dataclass(frozen=True)
class GoalResult:
    goal: Goal
    value: float | None
    status: str  # one of STATUSES
    note: str

    def as_dict(self) -> dict:
        g = self.goal
        return {"goal": g.name, "how": g.how, "value": self.value, "unit": g.unit, "op": g.op, "target": g.target,
                "status": self.status, "note": self.note}


# -- reading the records ------------------------------------------------------------------------------------------

def section(data: dict, name: str) -> dict:
    """The section's entry when it left cases; NotMeasured (saying why) otherwise."""
    entry = data.get("sections", {}).get(name)
    if entry is None:
        raise NotMeasured(f"{name} did not run")
    if not entry.get("cases"):
        why = entry.get("error") or ""
        raise NotMeasured(f"{name}: {entry.get('status', 'no results')}" + (f" ({why[:100]})" if why else ""))
    return entry


def row(entry: dict, part: str, first_call: bool = False) -> dict:
    """The timed case whose name holds ``part`` (the first call's row, or a median row)."""
    for case in entry["cases"]:
        if part in case["name"] and bool(case.get("first_call")) == first_call and case.get("ours_ms") is not None:
            return case
    why = f" ({entry.get('status')}: {(entry.get('error') or '')[:100]})" if entry.get("status") != "ok" else ""
    raise NotMeasured(f"no timed '{part.strip(': ')}' {'first-call ' if first_call else ''}row{why}")


def first_call_total_s(data: dict, name: str) -> Measured:
    """The first call's total from its own row (or, in runs before those rows, ``info["first_call_stages"]``)."""
    entry = section(data, name)
    try:
        return Measured(row(entry, ": total", first_call=True)["ours_ms"] / 1e3)
    except NotMeasured:
        stages = entry.get("info", {}).get("first_call_stages") or {}
        if stages.get("total") is None:
            raise
        return Measured(stages["total"])


def compile_total_row(data: dict, kind: str, run: str) -> dict:
    """The compile section's first-call total row of ``kind`` (text_to_video, multi_scale) in ``run`` (cold, warm,
    off, ...: sections/compile.py's RUNS)."""
    entry = section(data, "compile")
    for case in entry["cases"]:
        if (case.get("kind"), case.get("run"), case.get("stage")) == (kind, run, "total") and case.get("ours_ms"):
            return case
    why = f" ({entry.get('status')}: {(entry.get('error') or '')[:100]})" if entry.get("status") != "ok" else ""
    raise NotMeasured(f"compile: no {kind} {run} total row{why}")


def first_call_new_process_s(data: dict, kind: str, name: str) -> Measured:
    """The first call of a new process with an empty persistent cache (the compile section's cold run: a user's first
    run of the command line, whose cache is on); without that section, the ``name`` section's first call (a process
    of its own too, the cache off)."""
    try:
        return Measured(compile_total_row(data, kind, "cold")["ours_ms"] / 1e3)
    except NotMeasured as cold:
        try:
            return first_call_total_s(data, name)
        except NotMeasured as e:
            raise NotMeasured(f"{cold}; {e}") from None


def second_process_compile_s(data: dict, kind: str) -> Measured:
    """What the first call of a second process with the same shapes spends making programs: tracing, lowering and
    XLA's compiles or persistent-cache reads (their union), from the compile section's warm run."""
    row_ = compile_total_row(data, kind, "warm")
    if row_.get("compile_s") is None:
        raise NotMeasured(f"compile: the {kind} warm total row has no compile_s")
    return Measured(row_["compile_s"])


def median_total_s(data: dict, name: str) -> Measured:
    return Measured(row(section(data, name), ": total")["ours_ms"] / 1e3)


def pipeline_decode_vs_whole(data: dict) -> Measured:
    """The pipeline's decoding stage over the vae section's whole (untiled) decode of the same latents."""
    pipe, vae = section(data, "pipeline"), section(data, "vae")
    pipe_latent, vae_latent = pipe["info"].get("latent"), vae["info"].get("latent")
    same_vae = pipe["info"].get("vae") == vae["info"].get("config")
    if list(pipe_latent or ()) != list(vae_latent or ()) or not same_vae:
        raise NotMeasured(f"the vae section decoded latent {shape_text(vae_latent)}, the pipeline "
                          f"{shape_text(pipe_latent)}" + ("" if same_vae else " with another VAE config"))
    decoding = row(pipe, ": decoding")["ours_ms"]
    return Measured(decoding / row(vae, "VAE decode untiled")["ours_ms"])


def tiled_vs_whole_per_pixel(data: dict) -> Measured:
    """Tiled over untiled decode time per output pixel (both rows decode the same latents: the same pixels), with
    the pipelines' tiles (the uniform layout; a run from before it existed: diffusers' layout)."""
    vae = section(data, "vae")
    try:
        tiled = row(vae, "VAE decode uniform tiled")
    except NotMeasured:
        tiled = row(vae, "VAE decode tiled")
    return Measured(tiled["ours_ms"] / row(vae, "VAE decode untiled")["ours_ms"])


def transformer_row(data: dict) -> tuple[dict, dict, str]:
    """(the section, the 17x64x64 row or else the largest shape timed, "" or the shape timed instead)."""
    entry = section(data, "transformer")
    rows = [c for c in entry["cases"] if c.get("tokens") and not c.get("first_call") and c.get("ours_ms")]
    if not rows:
        raise NotMeasured("no timed transformer row")
    want = "x".join(map(str, TRANSFORMER_SHAPE))
    for r in rows:
        if r["name"].endswith(f" {want}"):
            return entry, r, ""
    r = max(rows, key=lambda c: c["tokens"])
    return entry, r, r["name"].rsplit(" ", 1)[-1]


def transformer_matmul_share(data: dict) -> Measured:
    entry, r, ran = transformer_row(data)
    if r.get("fraction_of_matmul_peak") is None:
        raise NotMeasured("no measured matmul rate (matmul_peak did not run)" if not data.get("matmul_tflops")
                          else "no TFLOP/s figure")
    return Measured(100 * r["fraction_of_matmul_peak"], ran)


def transformer_vs_diffusers(data: dict) -> Measured:
    entry, r, ran = transformer_row(data)
    if r.get("ratio") is None:
        skipped = entry.get("skipped", {}).get("diffusers transformer") or r.get("torch_error") or "not timed"
        raise NotMeasured(f"diffusers: {skipped[:100]}")
    return Measured(r["ratio"], ran)


def transformer_fp8_row(data: dict) -> tuple[dict, str]:
    """(the fp8 matmul row at 17x64x64 or else at the largest shape timed, "" or the shape timed instead)."""
    entry = section(data, "transformer")
    rows = [c for c in entry["cases"] if c.get("speedup") is not None and c.get("fp8_tokens")]
    if not rows:
        skipped = [why for what, why in entry.get("skipped", {}).items() if what.startswith("fp8")]
        raise NotMeasured("no timed fp8 matmul row" + (f" ({skipped[0][:100]})" if skipped else ""))
    want = "x".join(map(str, TRANSFORMER_SHAPE))
    for r in rows:
        if r.get("shape") == want:
            return r, ""
    r = max(rows, key=lambda c: c["fp8_tokens"])
    return r, r.get("shape", "")


def transformer_fp8_speedup(data: dict) -> Measured:
    r, ran = transformer_fp8_row(data)
    return Measured(r["speedup"], ran)


def transformer_fp8_error(data: dict) -> Measured:
    r, ran = transformer_fp8_row(data)
    return Measured(100 * r["max_rel_diff"], ran)


def ltx2_t2v_total_s(data: dict) -> Measured:
    """The ltx2_pipeline section's text-to-video total (median after the first call); a card other than an H200 (the
    goal's) leaves it not measured, the figure shown."""
    entry = section(data, "ltx2_pipeline")
    for case in entry["cases"]:
        name = case["name"]
        if name.startswith(LTX2_T2V_ROW) and name.endswith(": total") and not case.get("first_call") and (
                case.get("ours_ms") is not None):
            device = (data.get("environment") or {}).get("device_kind") or "an unknown device"
            return Measured(case["ours_ms"] / 1e3, "" if "H200" in device else f"{device}, not an H200")
    why = f" ({entry.get('status')}: {(entry.get('error') or '')[:100]})" if entry.get("status") != "ok" else ""
    raise NotMeasured(f"no timed text-to-video total row{why}")


# -- the goals ----------------------------------------------------------------------------------------------------

_MS = (("ms_video", (704, 1216, 121)), ("ms_preset", _DISTILLED), ("pipe_transformer", _2B), ("pipe_vae", _VAE_095))
_T2V = (("pipe_video", (512, 768, 121)), ("pipe_preset", _DISTILLED), ("pipe_transformer", _2B),
        ("pipe_vae", _VAE_095))
_TRANSFORMER = (("transformer", _2B), ("transformer_layers", 4))
_LTX2_T2V = (("ltx2_pipe", ("ltx-2-19b-distilled", {})), ("ltx2_pipe_video", (512, 768, 121)),
             ("ltx2_pipe_text_tokens", 1024), ("dtype", "bfloat16"))

GOALS: tuple[Goal, ...] = (
    Goal("multi-scale 0.9.8 2B distilled 1216x704x121, total", "multi_scale total row (median after the first call)",
         2.0, "<=", "s", _MS, lambda d: median_total_s(d, "multi_scale")),
    Goal("text-to-video 2B distilled 768x512x121 8 steps, total", "pipeline total row (median after the first call)",
         0.7, "<=", "s", _T2V, lambda d: median_total_s(d, "pipeline")),
    Goal("decode in the pipeline / whole decode of the same latents",
         "pipeline decoding row / vae untiled row (same latents and VAE)", 1.2, "<=", "x", _T2V + (
             ("vae", _VAE_095), ("vae_latent", (16, 16, 24))), pipeline_decode_vs_whole),
    Goal("tiled / whole decode per output pixel", "vae uniform tiled row / vae untiled row (the same output)", 1.3,
         "<=", "x",
         (("vae", _VAE_095), ("vae_latent", (16, 16, 24))), tiled_vs_whole_per_pixel),
    Goal("text-to-video 768x512x121, first call",
         "compile section's new process, cold cache, total row (else the pipeline first-call total row)", 15.0, "<=",
         "s", _T2V, lambda d: first_call_new_process_s(d, "text_to_video", "pipeline")),
    Goal("multi-scale 1216x704x121, first call",
         "compile section's new process, cold cache, total row (else the multi_scale first-call total row)", 20.0,
         "<=", "s", _MS, lambda d: first_call_new_process_s(d, "multi_scale", "multi_scale")),
    Goal("text-to-video 768x512x121, second process with the persistent cache: compile",
         "compile section's warm-cache total row: tracing + lowering + XLA (cache reads) in the first call", 3.0, "<=",
         "s", _T2V, lambda d: second_process_compile_s(d, "text_to_video")),
    Goal("multi-scale 1216x704x121, second process with the persistent cache: compile",
         "compile section's warm-cache total row: tracing + lowering + XLA (cache reads) in the first call", 3.0, "<=",
         "s", _MS, lambda d: second_process_compile_s(d, "multi_scale")),
    Goal("transformer 4 layers 17x64x64, share of the measured matmul rate",
         "transformer 17x64x64 row's TFLOP/s / matmul_peak's", 75.0, ">=", "%", _TRANSFORMER,
         transformer_matmul_share),
    Goal("transformer 4 layers 17x64x64, ours / diffusers", "transformer 17x64x64 row's median ours / diffusers",
         0.85, "<=", "x", _TRANSFORMER, transformer_vs_diffusers),
    Goal("transformer 4 layers 17x64x64, fp8 matmuls: speed-up over bf16",
         "transformer 17x64x64 row's median / its fp8 matmul row's (compute='fp8', same weights and inputs)", 1.4,
         ">=", "x", _TRANSFORMER, transformer_fp8_speedup),
    Goal("transformer 4 layers 17x64x64, fp8 matmuls: output vs bf16",
         "fp8 matmul row's max |fp8 - bf16| / max |bf16| of the output", 5.0, "<=", "%", _TRANSFORMER,
         transformer_fp8_error),
    Goal("LTX-2 distilled 768x512x121 8 steps, end to end (one H200, bf16)",
         "ltx2_pipeline text-to-video total row (median after the first call); " + LTX2_ANCHORS, 4.5, "<=", "s",
         _LTX2_T2V, ltx2_t2v_total_s),
)


# -- evaluation and text ------------------------------------------------------------------------------------------

def evaluate(data: dict, goals: tuple[Goal, ...] = GOALS) -> list[GoalResult]:
    """Every goal against the run's records (its JSON, after ``report.derive``); never raises."""
    return [evaluate_one(goal, data) for goal in goals]


def evaluate_one(goal: Goal, data: dict) -> GoalResult:
    run_sizes = data.get("sizes") or {}
    differs = [size_text(field, run_sizes.get(field)) for field, want in goal.sizes
               if plain(run_sizes.get(field)) != plain(want)]
    try:
        measured = goal.measure(data)
    except Exception as e:  # noqa: BLE001 - NotMeasured, or a record of an unexpected shape: the report goes on
        why = str(e) if isinstance(e, NotMeasured) else f"could not compute: {type(e).__name__}: {e}"[:160]
        return GoalResult(goal, None, "not measured", why + (f"; {ran_at(differs, data)}" if differs else ""))
    if differs or measured.ran:
        return GoalResult(goal, measured.value, "not measured", ran_at(differs + [measured.ran] * bool(measured.ran),
                                                                       data))
    met = measured.value <= goal.target if goal.op == "<=" else measured.value >= goal.target
    return GoalResult(goal, measured.value, "met" if met else "missed", "")


def ran_at(sizes: list[str], data: dict) -> str:
    """"ran at 96x64x17, pipe_transformer tiny (CPU sizes)": the sizes that differ from the goal's."""
    name = data.get("sizes_name")
    return "ran at " + ", ".join(sizes) + (f" ({name.upper()} sizes)" if name else "")


def plain(x: Any) -> Any:
    """JSON's view of a value (tuples as lists), so the run's JSON and a goal's sizes compare."""
    return json.loads(json.dumps(x))


def shape_text(shape) -> str:
    return "x".join(map(str, shape)) if shape else "none"


def size_text(field: str, value: Any) -> str:
    """One Sizes field as a reader says it: videos (height, width, frames) as WxHxF, models by preset name."""
    if value is None:
        return f"{field} not recorded"
    if field.endswith("_video"):
        h, w, f = value
        return f"{w}x{h}x{f}"
    if isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], dict):
        return f"{field} {value[0]}" + (" (modified)" if value[1] else "")
    if field == "vae_latent":
        return f"latent {shape_text(value)}"
    return f"{field} {value}"


def value_text(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    return {"s": f"{value:.3g} s", "x": f"{value:.2f}x", "%": f"{value:.0f}%" if value >= 10 else f"{value:.1f}%"}[unit]


def target_text(goal: Goal) -> str:
    return f"{goal.op} {value_text(goal.target, goal.unit)}"


GOAL_HEADER = ["performance goal", "measured", "target", "status", "note"]


def goal_rows(results: list[GoalResult]) -> list[list[str]]:
    return [[r.goal.name, value_text(r.value, r.goal.unit), target_text(r.goal), r.status, r.note] for r in results]


def goals_text(results: list[GoalResult]) -> str:
    """The goals as an aligned plain-text table (the last thing a run prints)."""
    rows = goal_rows(results)
    widths = [max(len(x) for x in col) for col in zip(GOAL_HEADER, *rows)]
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    lines = [f"performance goals: {counts['met']} met, {counts['missed']} missed, {counts['not measured']} not "
             "measured"]
    lines.append("  ".join(h.ljust(w) for h, w in zip(GOAL_HEADER, widths)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row_, widths)).rstrip() for row_ in rows]
    return "\n".join(lines)


def merge_runs(runs: list[dict]) -> dict:
    """Several saved runs as one, for a goals table over runs that split the sections: a section of a later run
    replaces an earlier one's, unless it left no cases where the earlier did (a default run's skipped optional vae
    does not hide the vae of a run of its own). The sizes and the environment are the first run's."""
    merged = dict(runs[0], sections={})
    for run in runs:
        for name, entry in run.get("sections", {}).items():
            if entry.get("cases") or not merged["sections"].get(name, {}).get("cases"):
                merged["sections"][name] = entry
    return merged


def goals_of_files(paths: list[str]) -> str:
    """``--goals RUN.json ...``: the goals table of saved runs, merged (see ``merge_runs``)."""
    from .report import derive  # report imports this module

    runs = []
    for path in paths:
        with open(path) as f:
            runs.append(json.load(f))
    data = merge_runs(runs)
    derive(data)
    return goals_text(evaluate(data))
