"""Pure pandas DataFrame -> DataFrame transforms of the streaming application.

Each micro-batch's Kafka records reach the driver as one Arrow table (one Spark job, no
shuffle); these functions validate, de-duplicate and aggregate it without I/O, so they are
tested on small hand-built DataFrames. ``streaming.sinks`` holds the I/O: a module per output
pairs these transforms with their SQL.
"""
