-- A run's logged losses in the order its candidates came, canaries left out: what the audit replays pick rules on.
-- params: run_id=null
with final as (
    select
        o.epoch,
        o.example_id,
        o.loss,
        o.step
    from observations as o
    join examples as e using (run_id, example_id)
    where o.run_id = cast($run_id as integer) and e.role != 'canary'
)

select epoch, example_id, loss from final
order by epoch, step
