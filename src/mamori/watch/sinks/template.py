"""The webhook's user-editable body: a Jinja2 template in a sandbox.

:func:`compile_body` runs at start-up: it compiles the template in a
:class:`jinja2.sandbox.ImmutableSandboxedEnvironment` with undefined names an error, and
renders it once for a sample alert, so a syntax error, an unknown name or an attempt to reach
unsafe attributes (``__class__``, ``__globals__``, ``mro``…) is a settings error before
anything is watched, not a failed alert later. The template sees the alert's JSON shape as
``alert`` (and each of its keys by name), its one-line text as ``line`` and its headline as
``headline``; ``tojson`` quotes a value for a JSON body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mamori.model.watch import Danger, Incident
from mamori.watch.sinks.alert import Alert, alert_headline, alert_line, alert_to_dict

__all__ = ["MAX_BODY", "TemplateProblem", "compile_body", "template_context"]

MAX_BODY = 256 * 1024  # bytes a rendered body may have
# Names no template needs (the sandbox refuses them at render time; refused here at start-up
# even in a branch the sample alert does not take).
UNSAFE = frozenset({"mro", "func_globals", "f_globals", "gi_frame", "gi_code", "cr_frame",
                    "cr_code", "ag_frame", "ag_code", "tb_frame", "f_back", "f_builtins"})


class TemplateProblem(ValueError):
    """The template cannot be used (the message says why, in one line)."""


def template_context(alert: Alert) -> dict[str, Any]:
    data = alert_to_dict(alert)
    return {**data, "alert": data, "line": alert_line(alert),
            "headline": alert_headline(alert.item, opened=alert.opened)}


def _sample() -> Alert:
    t = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    return Alert(Incident("192.0.2.7", "scan.ports", Danger.HIGH, t, t, 5, ("port.knock",),
                          ("scanner.nmap",), ("SYN 22",), id=1), True)


def compile_body(source: str) -> Callable[[Alert], bytes]:
    """The renderer of ``source``; raises TemplateProblem when it would fail or escape."""
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    try:
        _refuse_escapes(env.parse(source))
        template = env.from_string(source)
    except TemplateError as exc:
        raise TemplateProblem(f"template: {_one_line(exc)}") from None

    def render(alert: Alert) -> bytes:
        try:
            body = template.render(template_context(alert)).encode("utf-8")
        except TemplateError as exc:  # SecurityError and UndefinedError are TemplateErrors
            raise TemplateProblem(f"template: {_one_line(exc)}") from None
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateProblem(f"template: {type(exc).__name__}: {_one_line(exc)}") \
                from None
        if len(body) > MAX_BODY:
            raise TemplateProblem(f"template: the body is over {MAX_BODY} bytes")
        return body

    render(_sample())  # at start-up, not at the first alert
    return render


def _refuse_escapes(ast: nodes.Template) -> None:
    """Attribute or item names that start with ``_`` or are in UNSAFE, spelled out in the
    template (``x.__class__``, ``x['__globals__']``, ``x|attr('mro')``)."""
    names: list[object] = [n.attr for n in ast.find_all(nodes.Getattr)]
    names += [n.arg.value for n in ast.find_all(nodes.Getitem) if isinstance(n.arg, nodes.Const)]
    names += [a.value for f in ast.find_all(nodes.Filter) if f.name == "attr"
              for a in f.args if isinstance(a, nodes.Const)]
    for name in names:
        if isinstance(name, str) and (name.startswith("_") or name in UNSAFE):
            raise TemplateProblem(f"template: {name!r} is not allowed (the template runs in "
                                  "a sandbox)")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
