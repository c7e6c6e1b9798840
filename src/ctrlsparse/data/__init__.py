"""Data sets (registry: ``ctrlsparse.registry.DATASETS``): the bundled ``digits`` and ``mnist5k``, MNIST,
CIFAR, Tiny ImageNet, ImageNet and any image folder, where each expects its files (``layouts``), how they are
fetched (``download``), decoded into tensors (``images``, ``folders``) and described for MLflow (``describe``)."""
