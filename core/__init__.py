"""The ground floor: errors, typed settings, the version, output files, and the database contract — its schema, the
only writer, the read-only door, named queries and per-example scores, merging and export. Imports nothing above it."""
