"""Portable SLOs: slo.yaml to and from the formats of Sloth, Pyrra and OpenSLO.

Same layering as the rules: the spec is loaded and validated by ``toolkit.slo.spec``;
the functions here only *generate* documents from a validated ``SloSpec`` (export) or
turn a foreign document into an slo.yaml mapping that ``parse_spec`` then validates
(import). Files are written by the CLI.

Formats, as read from their repositories:

* Sloth ``prometheus/v1`` (github slok/sloth, pkg/prometheus/api/v1): ``sli.events``
  with ``error_query``/``total_query`` templated on ``{{.window}}``; objective in percent.
* Pyrra ``pyrra.dev/v1alpha1`` ``ServiceLevelObjective`` (github pyrra-dev/pyrra,
  kubernetes/api/v1alpha1): ``indicator.ratio.errors/total`` or ``indicator.latency.success/total``
  as vector selectors, the latency success selector with an ``le`` equality matcher; target a
  percent string.
* OpenSLO ``openslo/v1`` (github OpenSLO/OpenSLO README): a ``Service`` and one ``SLO`` per
  objective with an inline ``ratioMetric`` indicator; ``metadata.annotations`` carry the fields
  only obslab has, under the ``obslab.dev/`` prefix, so that export → import gives back an
  equivalent slo.yaml.

What none of the three can say — the events-side definitions (which attempt outcomes are
good and counted, the abandon timeout, the latency kind), the profiles' compressed windows —
is written into the export as comments or annotations; Sloth and Pyrra drop it on import.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import yaml

from toolkit.slo import names
from contract.durations import DurationError, format_duration, parse_duration
from toolkit.slo.spec import RATIO_OUTCOMES, Slo, SloSpec

__all__ = [
    "EXPORT_FORMATS",
    "IMPORT_FORMATS",
    "PortableError",
    "export_spec",
    "import_spec",
    "spec_document",
    "slo_yaml_text",
]

EXPORT_FORMATS = ("sloth", "pyrra", "openslo")
IMPORT_FORMATS = ("openslo", "sloth")
ANNOTATION_PREFIX = "obslab.dev/"
SLOTH_VERSION = "prometheus/v1"
PYRRA_API_VERSION = "pyrra.dev/v1alpha1"
OPENSLO_API_VERSION = "openslo/v1"
WINDOW = "{{.window}}"
# Sloth's built-in 30-day windows (internal/alert/windows/google-30d.yaml), the SRE Workbook's:
# (severity, long, short, budget consumed). An import with no windows of its own gets these.
SRE_WINDOWS = (
    ("page", "1h", "5m", 0.02),
    ("page", "6h", "30m", 0.05),
    ("ticket", "1d", "2h", 0.10),
    ("ticket", "3d", "6h", 0.10),
)
SLOTH_DEFAULT_PERIOD_S = 30 * 86400
# Profiles an import gets when the source has none: the shipped slo.yaml's.
DEFAULT_PROFILES = {
    "prod": {"time_compression": 1, "scrape_interval": "30s"},
    "lab": {"time_compression": 60, "scrape_interval": "1s"},
}


class PortableError(ValueError):
    """A document cannot be exported or imported; the message names the file and the field."""


# --------------------------------------------------------------------------- shared pieces


def _decimal(x: float) -> Decimal:
    return Decimal(repr(float(x)))


def _number(d: Decimal) -> int | float:
    """A decimal as YAML should show it: 99 not 99.0, 99.9 not 99.90000000000001."""
    d = d.normalize()
    return int(d) if d == d.to_integral_value() else float(d)


def _percent(objective: float) -> int | float:
    return _number(_decimal(objective) * 100)


def _duration_text(seconds: float) -> str:
    return format_duration(seconds)


def spec_document(spec: SloSpec) -> dict:
    """The slo.yaml mapping of a validated spec (what ``parse_spec`` reads back to an equal spec)."""
    slos = []
    for s in spec.slos:
        d: dict[str, Any] = {"name": s.name}
        if s.description:
            d["description"] = s.description
        d.update(kind=s.kind, objective=s.objective, period=_duration_text(s.period_s))
        if s.kind == "ratio":
            d["events"] = {"good": list(s.events_good), "total": list(s.events_total)}
        else:
            d["latency"] = s.latency
            d["threshold"] = _duration_text(s.threshold_s)
        d["prometheus"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.prometheus.items()}
        slos.append(d)
    return {
        "version": spec.version,
        "service": spec.service,
        "abandon_after": _duration_text(spec.abandon_after_s),
        "slos": slos,
        "alerting": {"windows": [
            {"severity": w.severity, "long": w.long, "short": w.short,
             "budget_consumed": w.budget_consumed, "burn_rate": _number(_decimal(w.burn_rate))}
            for w in spec.windows]},
        "profiles": {p.name: {"time_compression": _number(_decimal(p.time_compression)),
                              "scrape_interval": _duration_text(p.scrape_interval_s)}
                     for p in spec.profiles.values()},
    }


def _selectors(slo: Slo) -> dict[str, str]:
    """Raw series selectors (no rate, no window) of an SLO's good, bad and total events."""
    prom = slo.prometheus
    if slo.kind == "ratio":
        label = prom["outcome_label"]
        bad = tuple(o for o in prom["total"] if o not in prom["good"])
        return {
            "good": names.series_selector(prom["counter"], {label: tuple(prom["good"])}),
            "bad": names.series_selector(prom["counter"], {label: bad}) if bad else "",
            "total": names.series_selector(prom["counter"], {label: tuple(prom["total"])}),
        }
    return {
        "good": f"{prom['histogram']}_bucket{{{names.le_matcher(slo.threshold_s)}}}",
        "total": f"{prom['histogram']}_count",
    }


def _windows_are_sre_defaults(spec: SloSpec) -> bool:
    return (spec.slos[0].period_s == SLOTH_DEFAULT_PERIOD_S
            and [(w.severity, w.long_s, w.short_s, w.budget_consumed) for w in spec.windows]
            == [(sev, parse_duration(lo), parse_duration(sh), c) for sev, lo, sh, c in SRE_WINDOWS])


def _not_carried(spec: SloSpec, fmt: str) -> list[str]:
    """What the export cannot say, one line each (comments and annotations)."""
    lines = []
    if fmt != "openslo":
        lines.append("Events-side definitions (events.good/total outcomes, latency kind, abandon_after) "
                     "have no equivalent: only the Prometheus side is exported.")
    compressed = [p for p in spec.profiles.values() if p.time_compression != 1]
    if compressed:
        lines.append("Profiles with compressed windows (" + ", ".join(
            f"{p.name} x{p.time_compression:g}" for p in compressed) + ") are not expressible: "
            "this export uses the real (prod) period and windows.")
    if fmt == "sloth" and not _windows_are_sre_defaults(spec):
        lines.append("Alert windows differ from Sloth's default 30d windows: give Sloth an AlertWindows "
                     "file with --slo-period-windows-path.")
    if fmt == "pyrra":
        lines.append("Pyrra derives its own burn-rate windows from the SLO window; obslab's alerting.windows "
                     "are not carried.")
        if any(s.kind == "latency" for s in spec.slos):
            lines.append('Latency buckets are matched as Prometheus 3 writes them (le="1"); on Prometheus 2, '
                         "run Pyrra with --enable-prometheus3-migration.")
    if fmt == "openslo":
        lines.append("Burn-rate alerting, profiles and events-side fields are obslab-only: they are kept in "
                     "obslab.dev/ annotations.")
    return lines


def _header(spec: SloSpec, fmt: str) -> str:
    out = [f"# Exported by `obslab slo export --format {fmt}` from {spec.source.rsplit('/', 1)[-1]}.",
           "# Not carried over:"]
    out += [f"#  - {line}" for line in _not_carried(spec, fmt)]
    return "\n".join(out) + "\n"


def _dump(document: object) -> str:
    from toolkit.slo.files import dump_yaml  # the project's deterministic YAML style

    return dump_yaml(document)


# --------------------------------------------------------------------------- export


def export_sloth(spec: SloSpec) -> str:
    """A Sloth ``prometheus/v1`` spec: one SLO per obslab SLO, error/total queries templated on {{.window}}."""
    slos = []
    for s in spec.slos:
        sel = _selectors(s)
        if s.kind == "ratio":
            error_query = f"sum(rate({sel['bad']}[{WINDOW}])) or vector(0)" if sel["bad"] else "vector(0)"
        else:
            error_query = (f"sum(rate({sel['total']}[{WINDOW}]))\n-\n"
                           f"sum(rate({sel['good']}[{WINDOW}]))")
        slo: dict[str, Any] = {"name": s.name, "objective": _percent(s.objective)}
        if s.description:
            slo["description"] = s.description
        slo["sli"] = {"events": {"error_query": error_query,
                                 "total_query": f"sum(rate({sel['total']}[{WINDOW}]))"}}
        slo["alerting"] = {
            "name": names.camel_case(s.name) + "ErrorBudgetBurn",
            "labels": {"slo": s.name},
            "page_alert": {"labels": {"severity": "page"}},
            "ticket_alert": {"labels": {"severity": "ticket"}},
        }
        slos.append(slo)
    doc = {"version": SLOTH_VERSION, "service": spec.service, "slos": slos}
    header = _header(spec, "sloth")
    if spec.slos[0].period_s != SLOTH_DEFAULT_PERIOD_S:
        header += f"# SLO period: {_duration_text(spec.slos[0].period_s)}: run Sloth with --default-slo-period.\n"
    return header + _dump(doc)


def export_pyrra(spec: SloSpec) -> str:
    """One Pyrra ``ServiceLevelObjective`` per SLO, as a multi-document YAML stream."""
    docs = []
    carried = " ".join(_not_carried(spec, "pyrra"))
    for s in spec.slos:
        sel = _selectors(s)
        if s.kind == "ratio":
            indicator = {"ratio": {"errors": {"metric": sel["bad"] or sel["total"].replace("=~", "!~", 1)},
                                   "total": {"metric": sel["total"]}}}
        else:
            # Pyrra reads the threshold from an le *equality* matcher holding a float.
            le = names.le_spellings(s.threshold_s)[-1]
            success = f"{s.prometheus['histogram']}_bucket{{le=\"{le}\"}}"
            indicator = {"latency": {"success": {"metric": success}, "total": {"metric": sel["total"]}}}
        spec_doc: dict[str, Any] = {"target": str(_percent(s.objective)), "window": _duration_text(s.period_s)}
        if s.description:
            spec_doc["description"] = s.description
        spec_doc["indicator"] = indicator
        spec_doc["alerting"] = {"name": names.camel_case(s.name) + "ErrorBudgetBurn", "burnrates": True,
                                "absent": True}
        docs.append({
            "apiVersion": PYRRA_API_VERSION,
            "kind": "ServiceLevelObjective",
            "metadata": {"name": s.name, "labels": {"obslab.dev/service": spec.service},
                         "annotations": {"obslab.dev/not-carried": carried}},
            "spec": spec_doc,
        })
    return _header(spec, "pyrra") + "---\n".join(_dump(d) for d in docs)


def _openslo_duration(seconds: float, where: str) -> str:
    """OpenSLO's duration-shorthand: one positive integer and one of m h d w (no seconds)."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    raise PortableError(f"{where}: {_duration_text(seconds)} is not expressible as an OpenSLO duration "
                        "(whole minutes, hours, days or weeks)")


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def export_openslo(spec: SloSpec) -> str:
    """An OpenSLO v1 ``Service`` and one ``SLO`` per obslab SLO; obslab-only fields in annotations."""
    full = spec_document(spec)
    service = {
        "apiVersion": OPENSLO_API_VERSION,
        "kind": "Service",
        "metadata": {"name": spec.service, "annotations": {
            ANNOTATION_PREFIX + "spec-version": str(spec.version),
            ANNOTATION_PREFIX + "abandon-after": full["abandon_after"],
            ANNOTATION_PREFIX + "alerting-windows": _json(full["alerting"]["windows"]),
            ANNOTATION_PREFIX + "profiles": _json(full["profiles"]),
            ANNOTATION_PREFIX + "not-carried": " ".join(_not_carried(spec, "openslo")),
        }},
        "spec": {"description": f"Exported from obslab {spec.source.rsplit('/', 1)[-1]}."},
    }
    docs = [service]
    for s, raw in zip(spec.slos, full["slos"]):
        sel = _selectors(s)
        annotations = {ANNOTATION_PREFIX + "kind": s.kind,
                       ANNOTATION_PREFIX + "prometheus": _json(raw["prometheus"])}
        if s.kind == "ratio":
            annotations[ANNOTATION_PREFIX + "events"] = _json(raw["events"])
        else:
            annotations[ANNOTATION_PREFIX + "latency"] = s.latency
            annotations[ANNOTATION_PREFIX + "threshold"] = raw["threshold"]

        def source(query: str) -> dict:
            return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}

        slo_spec: dict[str, Any] = {}
        if s.description:
            slo_spec["description"] = s.description
        slo_spec.update({
            "service": spec.service,
            "indicator": {
                "metadata": {"name": f"{s.name}-sli"},
                "spec": {"ratioMetric": {"counter": True, "good": source(sel["good"]),
                                         "total": source(sel["total"])}},
            },
            "timeWindow": [{"duration": _openslo_duration(s.period_s, f"{spec.source}: slos: {s.name}: period"),
                            "isRolling": True}],
            "budgetingMethod": "Occurrences",
            "objectives": [{"displayName": s.name, "target": s.objective}],
        })
        docs.append({"apiVersion": OPENSLO_API_VERSION, "kind": "SLO",
                     "metadata": {"name": s.name, "annotations": annotations}, "spec": slo_spec})
    return _header(spec, "openslo") + "---\n".join(_dump(d) for d in docs)


# Names each format accepts: Sloth's conventions.NameRegexpStr; Kubernetes object names (Pyrra) and OpenSLO's
# metadata.name, both RFC 1123 labels. slo.yaml allows any non-empty name, so the export checks.
_NAME_RULES = {
    "sloth": (re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.]*[A-Za-z0-9]$"),
              "Sloth names start and end with a letter or digit and hold only letters, digits, '.', '_' and '-'"),
    "pyrra": (re.compile(r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
              "Kubernetes names are RFC 1123 labels: at most 63 lowercase letters, digits and '-'"),
    "openslo": (re.compile(r"^(?=.{1,63}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
                "OpenSLO names are RFC 1123 labels: at most 63 lowercase letters, digits and '-'"),
}


def _check_names(spec: SloSpec, fmt: str) -> None:
    pattern, rule = _NAME_RULES[fmt]
    named = [("service", spec.service)] + [(f"slos[{i}].name", s.name) for i, s in enumerate(spec.slos)]
    for where, name in named:
        if not pattern.match(name):
            raise PortableError(f"{spec.source}: {where}: {name!r} cannot be exported to {fmt}: {rule}")


def export_spec(spec: SloSpec, fmt: str) -> str:
    """The spec in one of EXPORT_FORMATS, as YAML text."""
    exporters = {"sloth": export_sloth, "pyrra": export_pyrra, "openslo": export_openslo}
    if fmt not in exporters:
        raise PortableError(f"--format: expected one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    _check_names(spec, fmt)
    return exporters[fmt](spec)


# --------------------------------------------------------------------------- import

# A selector as the exports write it, optionally wrapped in sum(rate(...[window])):
# metric{label="a"} or metric{label=~"a|b"} or a bare metric.
_WRAPPED = re.compile(r"^\s*sum\s*\(\s*rate\s*\(\s*(?P<sel>.+?)\s*\[[^\]]+\]\s*\)\s*\)\s*(?:or\s+vector\(0\))?\s*$",
                      re.S)
_SELECTOR = re.compile(r"^\s*(?P<metric>[a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(?P<labels>[^}]*)\})?\s*$")
_MATCHER = re.compile(r'\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*')


class _Importer:
    def __init__(self, source: str):
        self.source = source

    def fail(self, where: str, what: str) -> PortableError:
        return PortableError(f"{self.source}: {where}: {what}")

    def mapping(self, value: Any, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__}")
        return value

    def get(self, m: dict, key: str, where: str) -> Any:
        if key not in m:
            raise self.fail(f"{where}.{key}" if where else key, "required field is missing")
        return m[key]

    def selector(self, query: Any, where: str) -> tuple[str, dict[str, tuple[str, str]]]:
        """(metric, {label: (op, value)}) of a query that is one selector, bare or in sum(rate(...))."""
        if not isinstance(query, str):
            raise self.fail(where, f"expected a PromQL query string, got {query!r}")
        m = _WRAPPED.match(query)
        inner = m.group("sel") if m else query
        sm = _SELECTOR.match(inner)
        if not sm:
            raise self.fail(where, "cannot import: expected one series selector, bare or as "
                                   f"sum(rate(metric{{...}}[window])), got {' '.join(query.split())!r}")
        labels: dict[str, tuple[str, str]] = {}
        text = sm.group("labels") or ""
        for part in filter(str.strip, _split_matchers(text)):
            mm = _MATCHER.fullmatch(part)
            if not mm:
                raise self.fail(where, f"cannot read label matcher {part.strip()!r}")
            labels[mm.group("name")] = (mm.group("op"), mm.group("value"))
        return sm.group("metric"), labels

    def outcomes(self, matcher: tuple[str, str] | None, label: str, where: str) -> list[str]:
        if matcher is None or matcher[0] not in ("=", "=~"):
            raise self.fail(where, f"cannot import: expected an {label}=\"...\" or {label}=~\"a|b\" matcher")
        values = matcher[1].split("|") if matcher[0] == "=~" else [matcher[1]]
        bad = [v for v in values if v not in RATIO_OUTCOMES]
        if bad:
            raise self.fail(where, f"outcome {bad[0]!r} is not one of {', '.join(RATIO_OUTCOMES)}")
        return values

    def objective_from_percent(self, value: Any, where: str) -> float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise self.fail(where, f"expected a percentage, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a percentage, got {value!r}")
        return float(_decimal(value) / 100)


def _split_matchers(text: str) -> list[str]:
    """Split ``a="x",b=~"y|z"`` on the commas outside quotes."""
    parts, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return parts


def _default_windows(period_s: float) -> list[dict]:
    """The SRE Workbook windows with burn rates for the period (burn = consumed × period / long)."""
    out = []
    for severity, long, short, consumed in SRE_WINDOWS:
        burn = _decimal(consumed) * _decimal(period_s) / _decimal(parse_duration(long))
        out.append({"severity": severity, "long": long, "short": short, "budget_consumed": consumed,
                    "burn_rate": _number(burn)})
    return out


def _prometheus_from_queries(imp: _Importer, good_or_bad: str, good_q: Any, total_q: Any,
                             where_good: str, where_total: str) -> tuple[str, dict, dict[str, Any]]:
    """Kind, prometheus mapping and (latency) threshold from good-or-bad and total queries."""
    total_metric, total_labels = imp.selector(total_q, where_total)
    if total_metric.endswith("_count") and not total_labels:
        # Latency: total is the histogram's _count; good (or total - bad) is its threshold bucket.
        histogram = total_metric.removesuffix("_count")
        query = good_q
        if good_or_bad == "bad":
            m = re.match(r"^\s*(.+?)\s*\n?\s*-\s*\n?\s*(sum\s*\(.+)$", good_q if isinstance(good_q, str) else "",
                         re.S)
            if not m:
                raise imp.fail(where_good, "cannot import: a latency error query must be "
                                           "sum(rate(h_count[w])) - sum(rate(h_bucket{le=\"T\"}[w]))")
            query = m.group(2)
        metric, labels = imp.selector(query, where_good)
        if metric != histogram + "_bucket" or "le" not in labels:
            raise imp.fail(where_good, f"cannot import: expected {histogram}_bucket with an le matcher")
        le = re.sub(r"\(\\+\.0\)\?$", "", labels["le"][1])  # obslab's le=~"1(\\.0)?" spelling
        try:
            threshold = float(le)
        except ValueError:
            raise imp.fail(where_good, f"cannot read the le threshold {labels['le'][1]!r}") from None
        return "latency", {"histogram": histogram}, {"threshold": _duration_text(threshold)}
    if len(total_labels) != 1:
        raise imp.fail(where_total, "cannot import: expected a counter selected by one outcome label")
    label = next(iter(total_labels))
    total = imp.outcomes(total_labels[label], label, where_total)
    metric, labels = imp.selector(good_q, where_good) if good_q != "vector(0)" else (total_metric, {})
    if metric != total_metric:
        raise imp.fail(where_good, f"cannot import: expected the same counter as total ({total_metric})")
    if good_or_bad == "bad":
        bad = imp.outcomes(labels.get(label), label, where_good) if labels else []
        good = [o for o in total if o not in bad]
    else:
        good = imp.outcomes(labels.get(label), label, where_good)
    return "ratio", {"counter": total_metric, "outcome_label": label, "good": good, "total": total}, {}


def _slo_entry(name: Any, description: Any, kind: str, objective: float, period: str, prometheus: dict,
               extra: dict, events: dict | None = None, latency: str = "processing") -> dict:
    d: dict[str, Any] = {"name": name}
    if description:
        d["description"] = description
    d.update(kind=kind, objective=objective, period=period)
    if kind == "ratio":
        # Foreign specs have no events side: assume the Prometheus outcomes (said in docs/slo.md).
        d["events"] = events or {"good": list(prometheus["good"]), "total": list(prometheus["total"])}
    else:
        d["latency"] = latency
        d["threshold"] = extra["threshold"]
    d["prometheus"] = prometheus
    return d


def import_sloth(text: str, source: str) -> dict:
    """An slo.yaml mapping from a Sloth prometheus/v1 spec whose SLIs are event queries obslab can read."""
    imp = _Importer(source)
    doc = imp.mapping(_load_one(text, source, imp), "(document)")
    if doc.get("version") != SLOTH_VERSION:
        raise imp.fail("version", f"expected {SLOTH_VERSION!r}, got {doc.get('version')!r}")
    service = imp.get(doc, "service", "")
    raw_slos = imp.get(doc, "slos", "")
    if not isinstance(raw_slos, list) or not raw_slos:
        raise imp.fail("slos", "expected a non-empty list of SLOs")
    period = _duration_text(SLOTH_DEFAULT_PERIOD_S)
    slos = []
    for i, raw in enumerate(raw_slos):
        where = f"slos[{i}]"
        s = imp.mapping(raw, where)
        sli = imp.mapping(imp.get(s, "sli", where), f"{where}.sli")
        if "events" not in sli:
            raise imp.fail(f"{where}.sli", "only sli.events can be imported (not raw or plugin SLIs)")
        ev = imp.mapping(sli["events"], f"{where}.sli.events")
        kind, prom, extra = _prometheus_from_queries(
            imp, "bad", imp.get(ev, "error_query", f"{where}.sli.events"), imp.get(ev, "total_query",
                                                                                    f"{where}.sli.events"),
            f"{where}.sli.events.error_query", f"{where}.sli.events.total_query")
        objective = imp.objective_from_percent(imp.get(s, "objective", where), f"{where}.objective")
        slos.append(_slo_entry(imp.get(s, "name", where), s.get("description"), kind, objective, period, prom,
                               extra))
    return _assemble(service, "10m", slos, _default_windows(SLOTH_DEFAULT_PERIOD_S), DEFAULT_PROFILES)


def _assemble(service: Any, abandon_after: str, slos: list, windows: list, profiles: dict) -> dict:
    return {"version": 1, "service": service, "abandon_after": abandon_after, "slos": slos,
            "alerting": {"windows": windows}, "profiles": profiles}


def _load_one(text: str, source: str, imp: _Importer) -> Any:
    docs = _load_all(text, source)
    if len(docs) != 1:
        raise imp.fail("(document)", f"expected one YAML document, got {len(docs)}")
    return docs[0]


def _load_all(text: str, source: str) -> list:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise PortableError(f"{source}{where}: not valid YAML: {' '.join(str(problem).split())}") from None


def _annotation_json(imp: _Importer, annotations: dict, key: str, where: str) -> Any:
    try:
        return json.loads(annotations[ANNOTATION_PREFIX + key])
    except (TypeError, ValueError):
        raise imp.fail(f"{where}.metadata.annotations.{ANNOTATION_PREFIX}{key}", "not valid JSON") from None


def _openslo_period(imp: _Importer, spec: dict, where: str) -> str:
    tw = spec.get("timeWindow")
    if not isinstance(tw, list) or len(tw) != 1 or not isinstance(tw[0], dict):
        raise imp.fail(f"{where}.spec.timeWindow", "expected exactly one time window")
    if tw[0].get("isRolling") is not True:
        raise imp.fail(f"{where}.spec.timeWindow[0].isRolling", "only rolling windows can be imported")
    duration = tw[0].get("duration")
    try:
        return _duration_text(parse_duration(duration))
    except DurationError as e:
        raise imp.fail(f"{where}.spec.timeWindow[0].duration", str(e)) from None


def _openslo_query(imp: _Importer, ratio: dict, part: str, where: str) -> Any:
    """ratioMetric.<part>.metricSource.spec.query."""
    src = imp.mapping(imp.get(ratio, part, where), f"{where}.{part}")
    ms = imp.mapping(imp.get(src, "metricSource", f"{where}.{part}"), f"{where}.{part}.metricSource")
    return imp.mapping(imp.get(ms, "spec", f"{where}.{part}.metricSource"), f"{where}.{part}.metricSource.spec").get(
        "query")


def import_openslo(text: str, source: str) -> dict:
    """An slo.yaml mapping from OpenSLO v1 ``Service``/``SLO`` documents (inline ratioMetric indicators).

    obslab.dev/ annotations, where present, restore what only obslab has; without them the
    Prometheus queries are read and the events side, windows and profiles get their defaults.
    """
    imp = _Importer(source)
    docs = _load_all(text, source)
    service_doc, slo_docs = None, []
    for i, d in enumerate(docs):
        where = f"documents[{i}]"
        imp.mapping(d, where)
        if d.get("apiVersion") != OPENSLO_API_VERSION:
            raise imp.fail(f"{where}.apiVersion", f"expected {OPENSLO_API_VERSION!r}, got {d.get('apiVersion')!r}")
        kind = d.get("kind")
        if kind == "Service":
            service_doc = (where, d)
        elif kind == "SLO":
            slo_docs.append((where, d))
        else:
            raise imp.fail(f"{where}.kind", f"only Service and SLO documents can be imported, got {kind!r}")
    if not slo_docs:
        raise imp.fail("(document)", "no SLO document")
    svc_ann: dict = {}
    if service_doc:
        where, d = service_doc
        svc_ann = imp.mapping(imp.mapping(d.get("metadata") or {}, f"{where}.metadata").get("annotations") or {},
                              f"{where}.metadata.annotations")
    slos, periods = [], []
    service_name = None
    for where, d in slo_docs:
        meta = imp.mapping(imp.get(d, "metadata", where), f"{where}.metadata")
        ann = imp.mapping(meta.get("annotations") or {}, f"{where}.metadata.annotations")
        spec = imp.mapping(imp.get(d, "spec", where), f"{where}.spec")
        service_name = service_name or spec.get("service")
        if spec.get("budgetingMethod") != "Occurrences":
            raise imp.fail(f"{where}.spec.budgetingMethod",
                           f"only Occurrences can be imported, got {spec.get('budgetingMethod')!r}")
        if "indicator" not in spec:
            raise imp.fail(f"{where}.spec.indicator", "only inline indicators can be imported (not indicatorRef)")
        ind = imp.mapping(imp.mapping(spec["indicator"], f"{where}.spec.indicator").get("spec"),
                          f"{where}.spec.indicator.spec")
        if "ratioMetric" not in ind:
            raise imp.fail(f"{where}.spec.indicator.spec", "only ratioMetric indicators can be imported")
        ratio = imp.mapping(ind["ratioMetric"], f"{where}.spec.indicator.spec.ratioMetric")
        rw = f"{where}.spec.indicator.spec.ratioMetric"
        which = "good" if "good" in ratio else "bad"

        objectives = spec.get("objectives")
        if not isinstance(objectives, list) or len(objectives) != 1 or not isinstance(objectives[0], dict):
            raise imp.fail(f"{where}.spec.objectives", "expected exactly one objective")
        obj = objectives[0]
        if "target" in obj:
            objective = obj["target"]
        elif "targetPercent" in obj:
            objective = imp.objective_from_percent(obj["targetPercent"], f"{where}.spec.objectives[0].targetPercent")
        else:
            raise imp.fail(f"{where}.spec.objectives[0]", "expected target or targetPercent")
        period = _openslo_period(imp, spec, where)
        periods.append(period)
        name = imp.get(meta, "name", f"{where}.metadata")
        if ANNOTATION_PREFIX + "prometheus" in ann:
            kind = ann.get(ANNOTATION_PREFIX + "kind")
            prom = _annotation_json(imp, ann, "prometheus", where)
            extra = {"threshold": ann.get(ANNOTATION_PREFIX + "threshold")}
            events = _annotation_json(imp, ann, "events", where) if kind == "ratio" else None
        else:
            kind, prom, extra = _prometheus_from_queries(imp, which, _openslo_query(imp, ratio, which, rw),
                                                         _openslo_query(imp, ratio, "total", rw),
                                                         f"{rw}.{which}.metricSource.spec.query",
                                                         f"{rw}.total.metricSource.spec.query")
            events = None
        slos.append(_slo_entry(name, spec.get("description"), kind, objective, period, prom, extra, events,
                               ann.get(ANNOTATION_PREFIX + "latency", "processing")))
    if service_doc:
        service_name = imp.get(imp.mapping(service_doc[1].get("metadata"), f"{service_doc[0]}.metadata"), "name",
                               f"{service_doc[0]}.metadata")
    windows = (_annotation_json(imp, svc_ann, "alerting-windows", service_doc[0])
               if ANNOTATION_PREFIX + "alerting-windows" in svc_ann else _default_windows(parse_duration(periods[0])))
    profiles = (_annotation_json(imp, svc_ann, "profiles", service_doc[0])
                if ANNOTATION_PREFIX + "profiles" in svc_ann else DEFAULT_PROFILES)
    abandon = svc_ann.get(ANNOTATION_PREFIX + "abandon-after", "10m")
    return _assemble(service_name, abandon, slos, windows, profiles)


def import_spec(text: str, fmt: str, source: str) -> dict:
    """An slo.yaml mapping (not yet validated: pass it to ``parse_spec``) from a document in IMPORT_FORMATS."""
    importers = {"openslo": import_openslo, "sloth": import_sloth}
    if fmt not in importers:
        raise PortableError(f"--format: expected one of {', '.join(IMPORT_FORMATS)}, got {fmt!r}")
    return importers[fmt](text, source)


def slo_yaml_text(document: dict, source: str, schema_ref: str = "schemas/slo.schema.json") -> str:
    """An imported spec as slo.yaml text, with the editor schema line."""
    return (f"# yaml-language-server: $schema={schema_ref}\n"
            f"# Imported by `obslab slo import` from {source.rsplit('/', 1)[-1]}; see docs/slo.md.\n"
            + _dump(document))

