"""The guardrails as the Dagster UI shows them: the asset's metadata and the check's evidence.

Kept apart from the statistics (:mod:`assets.experiments.guardrail_readout`) so the numbers and
their presentation change separately. Degradations are shown as signed percentages for relative
margins and in the metric's units otherwise; positive is always worse.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import pandas as pd

from assets.experiments.guardrail_readout import GuardrailReadout, evidence_lines

_NUMBERS = (
    "degradation", "harm_bound", "ni_bound", "margin", "value", "value_control", "ni_p_value",
    "sd_per_unit",
)  # fmt: skip


def _shown(value: float | None, relative: bool) -> str:
    if value is None or pd.isna(value):
        return "-"
    return f"{value:+.2%}" if relative else f"{value:+.4g}"


def guardrail_table(readout: GuardrailReadout) -> str:
    """Markdown: per arm and guardrail, the status, values, degradation with both bounds, the
    margin and the p-values."""
    rows = []
    for judged in readout.judged:
        t = judged.test
        rows.append(
            {
                "arm": t.arm,
                "guardrail": t.guardrail,
                "status": judged.status,
                "units": f"{t.n} / {t.n_control}",
                "control": "-" if t.value_control is None else f"{t.value_control:.4g}",
                "treatment": "-" if t.value is None else f"{t.value:.4g}",
                "degradation": _shown(t.degradation, t.relative),
                "at least (any look)": _shown(t.harm_bound, t.relative),
                "at most (at plan)": _shown(t.ni_bound, t.relative),
                "margin": _shown(t.margin, t.relative),
                "harm p (Holm)": "-"
                if judged.harm_p_adjusted is None
                else f"{judged.harm_p_adjusted:.3g}",
                "non-inferiority p": "-" if t.ni_p_value is None else f"{t.ni_p_value:.3g}",
                "test": judged.reason or t.test,
            }
        )
    return pd.DataFrame(rows).to_markdown(index=False) if rows else "_(no guardrails)_"


def _numbers(readout: GuardrailReadout) -> dict[str, Any]:
    """``guardrail/<name>/<field>`` (``<name>@<arm>`` with several treatment arms)."""
    arms = {j.test.arm for j in readout.judged}
    out: dict[str, Any] = {}
    for judged in readout.judged:
        t = judged.test
        name = t.guardrail if len(arms) == 1 else f"{t.guardrail}@{t.arm}"
        out[f"guardrail/{name}/status"] = judged.status
        if judged.harm_p_adjusted is not None:
            out[f"guardrail/{name}/harm_p_adjusted"] = judged.harm_p_adjusted
        for field in _NUMBERS:
            value = getattr(t, field)
            if value is not None:
                out[f"guardrail/{name}/{field}"] = float(value)
    return out


def guardrail_metadata(readout: GuardrailReadout) -> dict[str, Any]:
    """The decision, its reason, the binding plan, the table and each guardrail's numbers."""
    needed = readout.decisions[0].units_needed if readout.decisions else {}
    return {
        "decision": readout.verdict,
        **{f"decision/{d.arm}": d.verdict for d in readout.decisions},
        "stop": readout.stop,
        "summary": readout.summary,
        "binding_plan": readout.binding,
        **{f"binding_planned_n/{arm}": n for arm, n in readout.planned_units.items()},
        **{f"units_needed/{arm}": n for arm, n in needed.items()},
        **{f"guardrail_plan/{p.guardrail}/total": p.total for p in readout.plans},
        **{f"guardrail_plan/{name}/note": note for name, note in readout.plan_notes.items()},
        "guardrails": dg.MetadataValue.md(guardrail_table(readout)),
        **_numbers(readout),
    }


def guardrail_check(readout: GuardrailReadout) -> tuple[bool, dict[str, Any]]:
    """(passed, metadata) of the guardrails check: passed unless a guardrail is harmful."""
    return not readout.harmful, {
        "decision": readout.verdict,
        "stop": readout.stop,
        "summary": readout.summary,
        "evidence": dg.MetadataValue.md(evidence_lines(readout)),
        "guardrails": dg.MetadataValue.md(guardrail_table(readout)),
        **_numbers(readout),
    }
