"""The ``vln-clip`` command line: one module per job, registered in :mod:`vln_clip.cli.main`."""
