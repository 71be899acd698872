"""Run the applicable checks against one endpoint and judge what the probes observed.

Judging is pure (``evaluate``); running is the only async part. A probe that fails gives
"not tested: reason" for every check that needed it: never "passed".
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from mamori.checks.observation import CheckOptions, Observation, ProbeContext
from mamori.checks.params import ParamError, Params
from mamori.checks.registry import PRIMITIVES
from mamori.checks.spec import CheckSpec, Matcher
from mamori.checks.texts import NOT_TESTED_PREFIX, PASSED_PREFIX, check_texts
from mamori.model import (
    CheckResult,
    CheckStatus,
    Confidence,
    Endpoint,
    Evidence,
    Layer,
    PortState,
    Proto,
    Service,
    Severity,
)
from mamori.model.scan import TEXT_LANGS
from mamori.net.stream import ProbeFailure

CHECK_BUDGET = 30.0  # seconds one primitive may take, end to end
# Seconds all checks of one endpoint may take together: a server that trickles or stalls
# every request must not hold a scan for (checks x CHECK_BUDGET).
ENDPOINT_BUDGET = 120.0
_PLACEHOLDER = re.compile(r"\$\{([a-z0-9_]+)\}")


def applies(spec: CheckSpec, endpoint: Endpoint, service: Service | None) -> bool:
    """Does ``spec`` concern this endpoint (open, same transport, a service it names)?"""
    if endpoint.state is not PortState.OPEN or spec.transport != endpoint.proto.value:
        return False
    if service is None:
        return False
    return service.name in spec.services or ("tls" in spec.services and service.tls)


def _matches(m: Matcher, fields: dict[str, str]) -> bool:
    value = fields.get(m.field)
    if m.present is not None:
        return (value is not None) == m.present
    if value is None:
        return False
    if m.regex is not None:
        return re.search(m.regex, value) is not None
    if m.equals is not None:
        return value == m.equals
    try:
        return m.min is not None and float(value) >= m.min
    except ValueError:
        return False


def fill(template: str, fields: dict[str, str]) -> str:
    """Replace ``${name}`` with the observed field (``?`` when missing). No code runs."""
    return _PLACEHOLDER.sub(lambda m: fields.get(m.group(1), "?")[:200], template)


def evaluate(spec: CheckSpec, ctx: ProbeContext, obs: Observation) -> CheckResult:
    """Judge one observation against one check: FINDING when every matcher holds and no
    negative matcher does, PASSED otherwise."""
    fields = dict(obs.fields)
    found = all(_matches(m, fields) for m in spec.matchers) and not any(
        _matches(m, fields) for m in spec.negative_matchers
    )
    evidence = Evidence(
        test=obs.test,
        request=obs.request,
        reply=obs.reply,
        facts={k: fields[k] for k in spec.evidence if k in fields},
    )
    severity, confidence, summary = spec.severity, spec.confidence, spec.summary
    grade = spec.grades.get(fields.get("grade", ""))
    if grade is not None:
        confidence = grade.confidence
        severity = grade.severity or severity
        summary = grade.summary or summary
    if found:
        summaries = {"en": fill(summary.en, fields), "ja": fill(summary.ja, fields)}
    else:
        summaries = {lang: PASSED_PREFIX[lang] + obs.test for lang in TEXT_LANGS}
    return _result(
        spec, ctx,
        status=CheckStatus.FINDING if found else CheckStatus.PASSED,
        confidence=confidence if found else None,
        severity=severity,
        summaries=summaries,
        evidence=evidence,
    )


def _result(
    spec: CheckSpec, ctx: ProbeContext, *, status: CheckStatus, confidence: Confidence | None,
    severity: Severity, summaries: dict[str, str], evidence: Evidence | None,
) -> CheckResult:
    summary = summaries["en"]
    return CheckResult(
        check_id=spec.id,
        address=ctx.address,
        port=ctx.port,
        proto=ctx.proto,
        status=status,
        severity=severity,
        layer=Layer(spec.layer),
        confidence=confidence,
        title=spec.title.en,
        summary=summary,
        evidence=evidence,
        remediation={
            "linux": spec.remediation.linux.en,
            "macos": spec.remediation.macos.en,
            "router": spec.remediation.router.en,
        },
        references=tuple(spec.references),
        texts=check_texts(spec, summaries),
    )


def not_tested(spec: CheckSpec, ctx: ProbeContext, reason: str) -> CheckResult:
    return _result(spec, ctx, status=CheckStatus.NOT_TESTED, confidence=None,
                   severity=spec.severity,
                   summaries={lang: NOT_TESTED_PREFIX[lang] + reason for lang in TEXT_LANGS},
                   evidence=None)


async def _observe(
    spec: CheckSpec, ctx: ProbeContext, budget: float, cut_reason: str | None = None
) -> Observation | str:
    primitive = PRIMITIVES[spec.probe.primitive]
    try:
        return await asyncio.wait_for(primitive(ctx, Params(spec.probe.params)), budget)
    except ProbeFailure as exc:
        return f"{exc.kind.value}: {exc.detail}"
    except TimeoutError:
        return cut_reason or f"timeout: no complete answer within {budget:.0f} s"
    except ParamError as exc:
        return f"internal: check file error: {exc}"


async def run_checks(
    specs: Sequence[CheckSpec],
    endpoint: Endpoint,
    service: Service | None,
    *,
    hostname: str | None = None,
    options: CheckOptions | None = None,
    budget: float = ENDPOINT_BUDGET,
    cut_reason: str | None = None,
) -> list[CheckResult]:
    """Run every applicable check against ``endpoint``; one result per applicable check.

    Checks that share a probe (same primitive and parameters) share one observation. Once
    ``budget`` seconds are spent, the remaining checks are "not tested" (with ``cut_reason``
    when the caller's bound, e.g. a host timeout, set the budget), never skipped.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    ctx = ProbeContext(endpoint.address, endpoint.port, Proto(endpoint.proto), service,
                       hostname, options or CheckOptions())
    seen: dict[tuple[str, str], Observation | str] = {}
    results = []
    for spec in specs:
        if not applies(spec, endpoint, service):
            continue
        key = (spec.probe.primitive, repr(sorted(spec.probe.params.items())))
        if key not in seen:
            left = deadline - loop.time()
            # A check stopped by the caller's bound (not its own) says so.
            cut = cut_reason if left < CHECK_BUDGET else None
            seen[key] = (
                await _observe(spec, ctx, min(CHECK_BUDGET, left), cut) if left > 1
                else cut_reason or f"timeout: this endpoint's {budget:.0f} s check budget was spent"
            )
        obs = seen[key]
        results.append(
            not_tested(spec, ctx, obs) if isinstance(obs, str) else evaluate(spec, ctx, obs)
        )
    return results
