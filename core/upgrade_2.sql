-- Schema 2 → 3: the audit's cross-fitted runs, estimate per canary kind, per-class table and scores file.
-- (Tables new in 3 are created by schema.sql.)
alter table audits add column if not exists fold_runs integer[];
alter table audits add column if not exists noise_by_kind map(varchar, double);
alter table audits add column if not exists uniform_weight double;
alter table audits add column if not exists per_class json;
alter table audits add column if not exists confusion json;
alter table audits add column if not exists scores_file varchar;
