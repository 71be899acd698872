"""Alert sinks: where mamori watch tells the owner (stdout, JSON lines, syslog, webhook,
e-mail), with per-sink filters, minimum danger, rate limits and bounded queues.

``AlertRouter.from_settings(settings)`` builds them from the ``[[watch.alerts]]`` entries;
``await router.start()``; ``router.publish(event_or_incident, opened=...)`` on the loop
thread; ``await router.aclose()`` to flush with a deadline.
"""

from mamori.watch.sinks.alert import (
    INCIDENT_SCHEMA,
    NOTICE_SCHEMA,
    Alert,
    Notice,
    alert_line,
    alert_to_dict,
    incident_to_dict,
    notice_to_dict,
)
from mamori.watch.sinks.base import Sink, SinkError
from mamori.watch.sinks.router import AlertRouter, Route, RouteStats, build_sink

__all__ = [
    "INCIDENT_SCHEMA",
    "NOTICE_SCHEMA",
    "Alert",
    "AlertRouter",
    "Notice",
    "Route",
    "RouteStats",
    "Sink",
    "SinkError",
    "alert_line",
    "alert_to_dict",
    "build_sink",
    "incident_to_dict",
    "notice_to_dict",
]
