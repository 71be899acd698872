"""Check primitives, one module per protocol family. Each primitive opens connections only
through mamori.net and parses only with mamori.protocols; it returns an Observation or raises
ProbeFailure (the check is then "not tested", never "passed")."""
