-- Test error and loss at every evaluation of every run, against backprops, forwards and seconds.
-- params: none
-- upfront_*: work a method does before its own training starts (rho's irreducible-loss model), which a
-- fair cost counts in: the curves and Table 1 add it to every x.
with final as (
    select
        r.run_id,
        r.experiment_id,
        r.experiment,
        r.arm as method,
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
        e.train_loss,
        coalesce((r.config->'upfront'->>'backprops')::bigint, 0) as upfront_backprops,
        coalesce((r.config->'upfront'->>'forwards')::bigint, 0) as upfront_forwards,
        coalesce((r.config->'upfront'->>'seconds')::double, 0) as upfront_seconds
    from evals as e
    join runs as r using (run_id)
)

select * from final
order by run_id, backprops
