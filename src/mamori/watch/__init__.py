"""mamori watch: a quiet sensor and log watcher that turns knocks into incidents.

Sources (decoys, ICMP, logs) produce :class:`~mamori.model.watch.Event` records; detectors
tag them (signatures) and derive scans / brute force / sweeps; incidents group them by source
and time window; sinks tell the owner; the store keeps everything.
"""
