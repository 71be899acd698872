"""Firewall: read and judge the real ruleset, and plan one that closes what is not served."""
