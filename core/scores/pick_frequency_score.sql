-- Picks per observation: how often the method chose the example when it was a candidate; higher = more suspect.
-- audit: no
sum(picked)::double / count(*)
