"""One scan: sweep, identify, check, and hand every record to a sink as it comes."""
