"""Benchmarks of brainkd's costly steps; each module's ``run(settings)`` returns result rows.

Kept free of imports so that the training-step worker processes start quickly.
"""
