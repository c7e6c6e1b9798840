"""Data sets (registry: ``ctrlsparse.registry.DATASETS``)."""
