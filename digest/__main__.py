"""``python -m digest``."""

from digest.cli import main

# Guarded: parser processes re-import the main module when they start.
if __name__ == "__main__":
    main()
