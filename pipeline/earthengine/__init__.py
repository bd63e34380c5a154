"""The Earth Engine side: from a study config to verified annual GeoTIFFs on disk.

- ``landsat``: the Collection 2 catalogue; ``recipes``: one ``ee.Image`` per year.
- ``client``: authentication and the calls to Earth Engine; ``exports``: idempotent tasks.
- ``manifest``: the SQLite record of every year; ``status_view``: tables and progress.
- ``remote``: Drive and Cloud Storage listings; ``downloads``: verified, resumable fetches;
  ``direct``: the direct route (computePixels tiles instead of an export task); ``grid``: the
  export's pixel grid, computed once for every route; ``integrity``: files that changed
  behind eetrend's back.
"""
