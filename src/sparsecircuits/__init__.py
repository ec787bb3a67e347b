"""sparsecircuits: interpretability by weight sparsity.

Train weight-sparse transformers on Python code, prune them to the smallest circuit that
still does a task, validate the circuit against controls, and view it offline.
"""

__version__ = "0.1.0"
