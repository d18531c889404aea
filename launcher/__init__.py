"""The ``globalmart`` command and ``globalmart up``: the floor above the components, which it
starts and wires together. The core (``globalmart/``) imports no component."""
