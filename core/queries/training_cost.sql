-- What a database's runs cost to train, in one row: for a study's summary line.
-- params: none
with per_run as (
    -- the seconds a run measured itself (a resumed run's started_at..finished_at would span the pause)
    select run_id, max(seconds) as seconds
    from steps
    group by run_id
),

final as (
    select
        (select coalesce(sum(seconds), 0) from per_run) / 3600 as training_hours,
        count(*) as runs,
        count(*) filter (where status = 'complete') as complete,
        max((config->>'threads')::int) as threads,
        string_agg(distinct device, ', ' order by device) as devices
    from runs
)

select * from final
