"""This machine, seen from the inside: listeners, firewall, sharing services, host hygiene.

Every platform command runs through ``runner.CommandRunner`` (the one seam), so the macOS and
Linux adapters can be replayed from recorded outputs in tests.
"""
