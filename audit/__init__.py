"""lossaudit's database layer and everything that reads it: schema, writer, queries, metrics, CLI."""

__version__ = "0.1.0"
