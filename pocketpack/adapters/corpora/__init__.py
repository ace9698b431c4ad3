"""Self-written style corpora (see README.md here): ``NAME.train.txt`` and ``NAME.heldout.txt``."""
