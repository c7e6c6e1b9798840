"""Architectures (registry: ``ctrlsparse.registry.ARCHS``); each builder makes a gated or a dense model."""
