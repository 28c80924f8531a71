-- Which complete runs have stored per-example scores, and which scores they hold.
-- params: none
with final as (
    select run_id, any_value(map_keys(scores)) as names
    from example_summaries
    group by run_id
)

select * from final
order by run_id
