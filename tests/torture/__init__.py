"""Torture tests: real SIGKILLs, real races."""
