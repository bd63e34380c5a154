"""What people see: maps and pixel plots (``plots``, ``maps``), the self-contained HTML
report (``report``, ``figures``, ``areas``, ``regional``) and notifications (``notify``)."""
