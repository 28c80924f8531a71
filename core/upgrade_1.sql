-- Database schema 1 (lossaudit 0.1) → 2: experiments, arms, selection counters; examples.corruption renamed.
-- Run once, before schema.sql, on a database whose meta.schema_version is 1; the store then fills the
-- new columns of the existing runs from their stored configs.
alter table runs add column experiment_id varchar;
alter table runs add column experiment varchar;
alter table runs add column arm varchar;
alter table steps add column selection_candidates bigint;
alter table steps add column selection_picks bigint;
alter table examples rename column corruption to corruption_kind;
