-- Test error and loss at every evaluation of every run, against backprops, forwards and seconds.
-- params: none
with final as (
    select
        r.run_id,
        r.method,
        r.corruption,
        r.seed,
        e.step,
        e.epoch,
        e.backprops,
        e.forwards,
        e.forwards_scoring,
        e.forwards_training,
        e.seconds,
        e.test_loss,
        e.test_error,
        e.train_loss
    from evals as e
    join runs as r using (run_id)
)

select * from final
order by run_id, backprops
