"""Stage 1, photo -> emotion: find and level faces (detection.py), classify them (classify.py), evaluate
the classifier (evaluation.py)."""
