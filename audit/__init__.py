"""The database and everything that reads it: schema, writer, named queries, per-example scores, metrics, the audit's analysis."""
