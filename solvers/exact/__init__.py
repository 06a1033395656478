"""Exact solvers: Pyomo MILP builders with the HiGHS driver, and a brute-force oracle."""
