-- Schema 3 → 4: the audit's reading against trusted labels (the test split's predictions; the table test_predictions
-- is new in 4 and created by schema.sql).
alter table audits add column if not exists noise_reference varchar;
alter table audits add column if not exists n_trusted integer;
alter table audits add column if not exists transition json;
