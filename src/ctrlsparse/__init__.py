"""ctrlsparse: controlled sparsity via constrained optimization (Gallego-Posada et al., NeurIPS 2022)."""

__version__ = "0.1.0"


def __getattr__(name: str):  # ``ctrlsparse.gate`` without importing torch for ``import ctrlsparse``
    if name == "gate":
        from ctrlsparse.models.autogate import gate

        return gate
    raise AttributeError(f"module 'ctrlsparse' has no attribute {name!r}")
