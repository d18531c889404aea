"""Pure DataFrame -> DataFrame transforms of the streaming application.

Each function takes and returns a DataFrame (batch or streaming alike) and does no I/O, so it
is tested on small hand-built batch DataFrames; ``streaming.app`` wires them between the Kafka
source and the sinks.
"""
