"""Speed, accuracy and soak benchmarks (``cplvad bench``; the bench/*.py scripts)."""
