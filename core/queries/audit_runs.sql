-- The proxy runs of an audit: the weights its confusable label canaries were drawn with, W[true, given].
-- params: run_ids=null
-- run_ids: comma-separated run ids (null = every run).
with final as (
    select
        run_id,
        cast(json_extract(config, '$.corruption_record.canary_confusion') as double[][]) as canary_confusion
    from runs
    where $run_ids is null or list_contains(cast(string_split($run_ids, ',') as integer[]), run_id)
)

select * from final
order by run_id
