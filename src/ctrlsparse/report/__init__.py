"""The grid's report, from the runs' files: tables of every run, setting and gated layer (``aggregate``, with
their text in ``settings_table`` and the seed spread in ``spread``), the figures (``plots``, drawn on ``canvas``;
``budget_plot``, ``seeds``; one run's curves in ``run_plot``) and the PDF (``pdf``, ``layout``, beside the
paper's numbers in ``paper``). Torch-free."""
