-- Each run's standing in comparisons: compared (the run that stands for its cell), superseded, or incomplete.
-- params: include_incomplete=false
-- A cell is (experiment, arm, corruption, seed). The latest complete run of a cell stands for it; an
-- earlier run of the same cell is superseded; a run that did not complete is not compared, unless
-- include_incomplete, which lets the latest run of a cell stand for it when no complete one exists.
with ranked as (
    select
        run_id,
        experiment_id,
        arm,
        corruption,
        seed,
        row_number() over (
            partition by experiment_id, arm, corruption, seed
            order by (status = 'complete') desc, run_id desc
        ) as rank
    from runs
    where status = 'complete' or cast($include_incomplete as boolean)
),

cells as (
    select experiment_id, arm, corruption, seed, run_id as compared_run_id
    from ranked
    where rank = 1
),

final as (
    select
        r.run_id,
        r.experiment_id,
        r.experiment,
        r.arm as method,
        r.method as method_given,
        coalesce(r.config->>'method_resolved', r.method) as method_resolved,
        coalesce((r.config->'method_traits'->>'loss_based')::boolean, false) as loss_based,
        coalesce((r.config->'method_traits'->>'is_control')::boolean, false) as is_control,
        coalesce((r.config->'method_traits'->>'is_baseline')::boolean, false) as is_baseline,
        (r.config->'method_traits'->>'nominal_selectivity')::double as nominal_selectivity,
        coalesce((r.config->>'audit_proxy')::boolean, (r.config->'audit') is not null) as audit_proxy,
        r.corruption,
        r.corruption_kind,
        r.seed,
        r.status,
        r.epochs,
        r.epochs_done,
        case
            when c.compared_run_id = r.run_id then 'compared'
            when k.rank is not null then 'superseded'
            else 'incomplete'
        end as standing,
        c.compared_run_id
    from runs as r
    left join ranked as k using (run_id)
    left join cells as c
        on c.experiment_id = r.experiment_id and c.arm = r.arm and c.corruption = r.corruption and c.seed = r.seed
)

select * from final
order by run_id
