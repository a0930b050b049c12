"""``python -m meshtryoshka_data``: the ``meshtryoshka-data`` command."""

from .cli import main

if __name__ == "__main__":
    main()
