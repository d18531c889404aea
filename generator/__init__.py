"""The event generator: a simulated e-commerce world producing into Kafka (``globalmart generate``).

``config`` (settings), ``catalog`` (the world), ``simulate`` (pure simulation), ``producer``
(Kafka), ``sources`` (PostgreSQL source tables), ``runner`` (the loop), ``cli`` (the command).
"""
