"""End-to-end tests of the platform's processes as a user runs them (``globalmart up``,
``stream``, ``generate``, ``dg dev``): real subprocesses, minutes each. ``make test-fast``
leaves them out."""
