"""Torture tests: real SIGKILLs, real races (issue 5)."""
