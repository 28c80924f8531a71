-- One row per experiment: runs whose configuration is identical but for method, corruption and seed.
-- params: none
with final as (
    select
        experiment_id,
        any_value(experiment) as experiment,
        count(*) as runs,
        count(*) filter (where status = 'complete') as complete,
        string_agg(distinct arm, ', ' order by arm) as methods,
        string_agg(distinct corruption, ', ' order by corruption) as corruptions,
        string_agg(distinct seed::varchar, ', ' order by seed::varchar) as seeds,
        min(run_id) as first_run,
        max(run_id) as last_run,
        max(started_at) as last_started
    from runs
    group by experiment_id
)

select * from final
order by first_run
