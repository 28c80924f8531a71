-- Schemas 5 → 6 → 7 → 8 (each statement a no-op where it is done). 5 → 6: forwards made only to log (the uniform control's opt-in scoring), counted apart from every cost;
-- the audit's verdict per replayed method.
-- Run before schema.sql on a database of any earlier schema (a table it does not have yet, schema.sql creates).
alter table if exists steps add column if not exists forwards_logging bigint;
alter table if exists evals add column if not exists forwards_logging bigint;
alter table if exists audits add column if not exists method_verdicts json;
-- Schema 7 → 8: the audit's bounds on the noise share whatever the noise looks like.
alter table if exists audits add column if not exists noise_bound_low double;
alter table if exists audits add column if not exists noise_bound_high double;
-- Schema 6 → 7: the validation split's loss and error at every evaluation, and examples.role may be 'validation':
-- a check constraint cannot be altered, so the examples are set aside here, schema.sql creates the table under the
-- new check and core/store.py copies them back (by name).
alter table if exists evals add column if not exists val_loss double;
alter table if exists evals add column if not exists val_error double;
create table examples_before_7 as select * from examples;
drop table examples;
