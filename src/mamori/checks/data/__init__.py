"""Knowledge tables the checks consult (data as typed Python, enforced by their own tests)."""
