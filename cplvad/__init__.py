"""The ``cplvad`` command (see :mod:`cplvad.cli`)."""
