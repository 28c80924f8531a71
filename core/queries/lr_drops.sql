-- Where each run on a step schedule dropped its learning rate: the steps whose lr is below 90% of the step before.
-- params: none
-- Runs on a linear schedule (runs.config.schedule) have no drops: their lr falls a little at every step.
-- backprops_total: examples back-propagated by the end of the step before the drop, upfront work (rho's model)
-- included, on the same axis as the curves and Table 1; drop: the drop's order in its run (1 = first).
with ordered as (
    select
        s.run_id,
        s.step,
        s.epoch,
        s.lr,
        lag(s.lr) over (partition by s.run_id order by s.step) as lr_before,
        lag(s.backprops) over (partition by s.run_id order by s.step) as backprops_before
    from steps as s
),

final as (
    select
        r.run_id,
        r.experiment_id,
        r.arm as method,
        r.corruption,
        r.seed,
        o.epoch,
        o.lr_before,
        o.lr,
        o.backprops_before + coalesce((r.config->'upfront'->>'backprops')::bigint, 0) as backprops_total,
        row_number() over (partition by o.run_id order by o.step) as drop
    from ordered as o
    join runs as r using (run_id)
    where o.lr < 0.9 * o.lr_before and coalesce(r.config->>'schedule', 'step') = 'step'
)

select * from final
order by run_id, drop
