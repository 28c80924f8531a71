-- Share of each epoch's backprops spent on corrupted examples, per run, next to the base rate (Figure 3).
-- params: none
-- Numerator and base rate count the same population: the examples trained on (role train or canary;
-- not rho's holdout, not the originals a label canary stands in for).
with picks as (
    select
        o.run_id,
        o.epoch,
        sum(o.picked) as backprops,
        sum(o.picked * e.is_corrupted::integer) as corrupted_backprops
    from observations as o
    join examples as e using (run_id, example_id)
    where e.role in ('train', 'canary')
    group by o.run_id, o.epoch
),

base as (
    select run_id, avg(is_corrupted::integer) as base_rate
    from examples
    where role in ('train', 'canary')
    group by run_id
),

final as (
    select
        r.run_id,
        r.experiment_id,
        r.experiment,
        r.arm as method,
        r.corruption,
        r.corruption_kind,
        r.seed,
        p.epoch,
        p.backprops,
        p.corrupted_backprops,
        p.corrupted_backprops::double / nullif(p.backprops, 0) as corrupted_share,
        b.base_rate
    from picks as p
    join runs as r using (run_id)
    join base as b using (run_id)
)

select * from final
order by run_id, epoch
