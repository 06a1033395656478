"""maskopt.solvers: optimization engines (exact MILP, relaxations, unrolled solvers).

This package takes arrays, tensors and callables and never imports the rest of maskopt.
"""
