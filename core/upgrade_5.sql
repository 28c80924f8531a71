-- Schema 5 → 6: forwards made only to log (the uniform control's opt-in scoring), counted apart from every cost;
-- the audit's verdict per replayed method.
-- Run before schema.sql on a database of any earlier schema (a table it does not have yet, schema.sql creates).
alter table if exists steps add column if not exists forwards_logging bigint;
alter table if exists evals add column if not exists forwards_logging bigint;
alter table if exists audits add column if not exists method_verdicts json;
