"""A run's figures as text: derived fractions of the matmul peak, the markdown appended to RESULTS.md, and the
summary table printed last (the performance goals of goals.py close both)."""

from __future__ import annotations

from .goals import GOAL_HEADER, evaluate, goal_rows, goals_text


def derive(data: dict) -> None:
    """Fraction of the measured matmul rate for every TFLOP/s figure; the list of failing sections; the performance
    goals (goals.py)."""
    mm = data["sections"].get("matmul_peak", {}).get("info", {})
    peak = mm.get("matmul_tflops")
    torch_peak_rate = mm.get("torch_matmul_tflops")
    data["matmul_tflops"] = peak
    for name, entry in data["sections"].items():
        for row in entry.get("cases", []) or []:
            if peak and row.get("tflops") is not None:
                row["fraction_of_matmul_peak"] = row["tflops"] / peak
            if peak and row.get("torch_tflops") is not None:
                row["torch_fraction_of_matmul_peak"] = row["torch_tflops"] / peak
    data["matmul_tflops_torch"] = torch_peak_rate
    data["failed_sections"] = [n for n, e in data["sections"].items()
                               if e.get("status") not in ("ok", "pending", "running", "skipped")]
    data["performance_goals"] = [r.as_dict() for r in evaluate(data)]


def fmt_ms(v) -> str:
    if v is None:
        return ""
    return f"{v:.3g}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def fmt_bytes(v) -> str:
    if v is None:
        return ""
    return f"{v / 2**30:.2f} GiB" if v >= 2**30 else f"{v / 2**20:.1f} MiB"


def fmt_num(v, spec=".2f") -> str:
    return "" if v is None else format(v, spec)


def case_rows(data: dict) -> list[list[str]]:
    rows = []
    for name, entry in data["sections"].items():
        for r in entry.get("cases", []) or []:
            notes = []
            if r.get("compile_s") is not None:
                notes.append(f"compile {r['compile_s']:.1f} s")
            if r.get("max_rel_diff") is not None:
                notes.append(f"rel diff {r['max_rel_diff']:.1e}")
            if r.get("psnr_db") is not None:
                notes.append(f"PSNR {r['psnr_db']:.1f} dB")
            if r.get("cudnn_fmha_calls") is not None:
                notes.append(f"cuDNN fmha calls {len(r['cudnn_fmha_calls'])}")
            if r.get("compiled_memory"):
                notes.append(f"compiled {fmt_bytes(r['compiled_memory'].get('total'))}")
            if r.get("ratio") is not None and r.get("ours_ms") is None:
                notes.append(f"ratio {r['ratio']:.2f}")
            if r.get("note"):
                notes.append(r["note"])
            for k in ("error", "torch_error"):
                if r.get(k):
                    notes.append(f"{k}: {r[k][:120]}")
            frac = r.get("fraction_of_matmul_peak")
            rows.append([
                name, r["name"], fmt_ms(r.get("ours_ms")), fmt_ms(r.get("torch_ms")),
                fmt_num(r.get("ratio") if r.get("ours_ms") is not None else None),
                fmt_num(None if r.get("flops") is None else r["flops"] / 1e9, ".4g"),
                fmt_num(r.get("tflops"), ".3g"), "" if frac is None else f"{100 * frac:.0f}%",
                fmt_bytes(r.get("peak_bytes")), fmt_bytes(r.get("torch_peak_bytes")), "; ".join(notes),
            ])
    return rows


CASE_HEADER = ["section", "case", "ours ms", "diffusers ms", "ours/diffusers", "GFLOP", "TFLOP/s", "% matmul peak",
               "peak mem ours", "peak mem torch", "notes"]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda c: str(c).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(data: dict) -> str:
    env = data["environment"]
    card = env.get("nvidia_smi") or env.get("device_kind")
    out = [f"\n## run_all {env.get('date', '')[:10]}: {env.get('device_kind')} ({env.get('backend')}), sizes "
           f"{data['sizes_name']} ({data['sizes']['dtype']})\n",
           f"card: {card}; driver {env.get('driver', 'n/a')}; jax {env.get('jax')} (jaxlib {env.get('jaxlib')}), "
           f"flax {env.get('flax')}, torch {env.get('torch')}, diffusers {env.get('diffusers')}, "
           f"transformers {env.get('transformers')}, python {env.get('python')}; date {env.get('date')}; "
           f"wall {data.get('elapsed_s', 0):.0f} s"
           + (f" of a {data['budget_s']:.0f} s budget" if data.get("budget_s") else "")
           + (f"; INTERRUPTED: {data['interrupted']}" if data.get("interrupted") else "") + "\n"]
    if data.get("matmul_tflops"):
        out.append(f"measured {data['sizes']['dtype']} matmul rate: {data['matmul_tflops']:.3g} TFLOP/s (ours)"
                   + (f", {data['matmul_tflops_torch']:.3g} TFLOP/s (torch)" if data.get("matmul_tflops_torch") else "")
                   + "; '% matmul peak' is relative to ours\n")
    out.append("\n" + md_table(["section", "status", "seconds", "peak device memory: ours", "torch", "note"], [
        [n, e.get("status", ""), fmt_num(e.get("wall_s") or e.get("seconds"), ".0f"),
         fmt_bytes(e.get("peak_device_bytes")), fmt_bytes(e.get("torch_peak_device_bytes")),
         (e.get("error") or "")[:200]] for n, e in data["sections"].items()]))
    out.append("\n" + md_table(CASE_HEADER, case_rows(data)))
    checks = [[n, k, "ok" if v.get("ok") else "FAIL", fmt_value(v.get("value")), fmt_value(v.get("limit"))]
              for n, e in data["sections"].items() for k, v in (e.get("checks") or {}).items()]
    if checks:
        out.append("\n" + md_table(["section", "check", "result", "value", "limit"], checks))
    goals = [[n, k, {True: "met", False: "missed", None: "n/a"}[v.get("met")], fmt_value(v.get("value")),
              f"{v.get('op')} {fmt_value(v.get('target'))}"]
             for n, e in data["sections"].items() for k, v in (e.get("goals") or {}).items()]
    if goals:
        out.append("\n" + md_table(["section", "goal", "result", "value", "target"], goals))
    skipped = [[n, k, v] for n, e in data["sections"].items() for k, v in (e.get("skipped") or {}).items()]
    if skipped:
        out.append("\n" + md_table(["section", "skipped", "why"], skipped))
    out.append("\nperformance goals (benchmarks/run_all/goals.py; \"not measured\" where a section did not run or ran "
               "at other sizes than the goal's):\n\n" + md_table(GOAL_HEADER, goal_rows(evaluate(data))))
    return "".join(out)


def fmt_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, list) and len(v) > 6:
        return f"[{len(v)} items: {', '.join(map(str, v[:2]))}, ...]"
    return str(v)


def summary_text(data: dict) -> str:
    """The short table printed last."""
    lines = [f"run_all summary: {data['environment'].get('device_kind')}, sizes {data['sizes_name']}, "
             f"{data.get('elapsed_s', 0):.0f} s"
             + (f", matmul {data['matmul_tflops']:.3g} TFLOP/s" if data.get("matmul_tflops") else "")]
    header = ["section", "case", "ours ms", "torch ms", "ratio", "TFLOP/s", "%peak", "peak mem", "notes"]
    rows = [[r[0], r[1][:58], r[2], r[3], r[4], r[6], r[7], r[8], r[10][:60]] for r in case_rows(data)]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    for n, e in data["sections"].items():
        bad = [k for k, v in (e.get("checks") or {}).items() if not v.get("ok")]
        note = f" ({e.get('error')})" if e.get("status") != "ok" and e.get("error") else ""
        lines.append(f"{n}: {e.get('status')}{note}" + (f"; failed checks: {bad}" if bad else ""))
    lines.append("failed sections: " + (", ".join(data.get("failed_sections") or []) or "none"))
    lines += ["", goals_text(evaluate(data))]
    return "\n".join(lines)

