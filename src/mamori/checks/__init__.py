"""Exposure checks: one YAML file per check (catalog/), validated at load, run by one engine.

Probes are Python primitives registered explicitly in ``registry.PRIMITIVES``; a check file
names one and says how to judge what it observed (matchers, negative matchers, grades).
"""
