-- The k most and k least picked examples of each class (label as trained) per run: the paper's Figures 1-2.
-- params: k=8, run_id=null
with picks as (
    select
        run_id,
        example_id,
        sum(picked) as picks,
        count(*) as n_observations
    from observations
    where cast($run_id as integer) is null or run_id = cast($run_id as integer)
    group by run_id, example_id
),

ranked as (
    select
        p.run_id,
        p.example_id,
        e.label,
        e.true_label,
        e.is_corrupted,
        e.corruption_kind,
        e.source,
        p.picks,
        p.n_observations,
        p.picks::double / p.n_observations as pick_frequency,
        row_number() over (partition by p.run_id, e.label order by p.picks desc, p.example_id) as most_rank,
        row_number() over (partition by p.run_id, e.label order by p.picks asc, p.example_id) as least_rank
    from picks as p
    join examples as e using (run_id, example_id)
),

final as (
    select 'most' as which, most_rank as rank, * exclude (most_rank, least_rank)
    from ranked where most_rank <= $k
    union all
    select 'least' as which, least_rank as rank, * exclude (most_rank, least_rank)
    from ranked where least_rank <= $k
)

select * from final
order by run_id, label, which desc, rank
