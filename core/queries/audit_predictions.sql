-- Per run and example: the class the model predicts most often over the later half of the run's epochs.
-- params: run_id=null
with obs as (
    select
        run_id,
        example_id,
        epoch,
        pred,
        max(epoch) over (partition by run_id) as last_epoch
    from observations
    where cast($run_id as integer) is null or run_id = cast($run_id as integer)
),

final as (
    select
        run_id,
        example_id,
        mode(pred) as suggested,
        count(*) as n_observations
    from obs
    where epoch >= last_epoch / 2
    group by run_id, example_id
)

select * from final
order by run_id, example_id
