-- The originals a run's label canaries train in place of (role replaced): the audit scores them through their copy.
-- params: run_id=null
with final as (
    select
        run_id,
        example_id,
        label,
        true_label,
        is_corrupted,
        corruption_kind,
        label != true_label as label_changed,
        source,
        role
    from examples
    where run_id = cast($run_id as integer) and role = 'replaced'
)

select * from final
order by example_id
