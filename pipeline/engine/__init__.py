"""The trend engine: annual rasters in, per-pixel trends out, with no Earth Engine involved.

- ``kernels/``: pure array maths (OLS, Sen + Mann-Kendall and its modified tests, Pettitt, trends with breaks).
- ``stack``: finding, ordering and reading the annual rasters on one grid; ``mosaic``: split exports as VRTs.
- ``windows``, ``executors``, ``dask_executor``: memory-budgeted windows fanned out to workers.
- ``trend``: the whole fit of a stack into one output; ``fdr``, ``coverage``, ``statistics``: its options.
- ``api``, ``xarray_api``: the notebook interface; ``formats``: COG, NetCDF and Zarr outputs.
- ``bandmath`` (``eetrend index``) and ``sample`` (synthetic stacks with a known trend).
"""
