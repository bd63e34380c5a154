"""Writing files that cannot lie: atomic outputs checked before their rename (``outputs``),
disk-space and write-error handling (``diskio``), and the temporaries of dead processes
(``leftovers``)."""
