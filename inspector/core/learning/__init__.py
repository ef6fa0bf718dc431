"""Active learning: models, query strategies, honest metrics, the project loop and simulation.

No Qt here. ``learner`` splits a learning step into snapshot (store reads), fit and select (pure,
safe on a worker thread) and commit (store writes).
"""
