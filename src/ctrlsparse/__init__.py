"""ctrlsparse: controlled sparsity via constrained optimization (Gallego-Posada et al., NeurIPS 2022)."""

__version__ = "0.1.0"
