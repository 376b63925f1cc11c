"""Running a grid: ``spec`` (one cell), ``grid`` (options -> cells), ``store`` (one record per
cell on disk), ``executors`` (local process pool, Ray) and ``version`` (the code version).

Kept free of imports so that worker processes load only what they use.
"""
