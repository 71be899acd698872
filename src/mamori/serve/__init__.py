"""mamori serve: the self-service "check my connection" page.

A visitor opens the page; mamori probes the address the request came from (the TCP peer, or
what a configured trusted proxy says it is; never an address the visitor names), and shows
the same report as the CLI. Pure parts: ``scope`` (address normalisation and policy),
``peer`` (trusted proxies), ``tokens`` (signed CSRF and session tokens), ``passwords``,
``ratelimit``, ``profiles``. I/O: ``worker`` (one check into the store), ``backend`` (the
job pool), ``app`` (FastAPI pages).
"""
