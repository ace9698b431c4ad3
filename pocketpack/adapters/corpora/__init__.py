"""Self-written style corpora (see README.md here): ``NAME.train.txt``, ``NAME.dev.txt`` and ``NAME.heldout.txt``."""
