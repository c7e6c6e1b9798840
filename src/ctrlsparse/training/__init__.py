"""Training: build a run from its hyperparameters (``setup``), the short loop (``loop``) and its hooks
(evaluation, checkpoints, the summary, the step budget, the run lock, DDP), the ``train`` CLI and the ``purge``
CLI that turns a finished run into its small model (``purge_cli``)."""
