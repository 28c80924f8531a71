-- The diagnostics each method declares, over training: one row per run, diagnostic and step.
-- params: max_points=400
-- Declared in runs.config.method_traits.diagnostics (a steps.state key, its label, meaning and threshold). At most
-- about max_points steps per run (evenly spaced); switch_on: the method's switch at that step (method_traits.switch),
-- NULL for a method without one; run_min, run_max: over all its steps.
with declared as (
    select
        r.run_id,
        r.experiment_id,
        r.arm as method,
        r.corruption,
        r.seed,
        r.config->'method_traits'->>'switch' as switch_key,
        unnest(from_json(r.config->'method_traits'->'diagnostics',
                         '[{"key": "VARCHAR", "label": "VARCHAR", "meaning": "VARCHAR", "threshold": "DOUBLE"}]'))
            as d
    from runs as r
),

numbered as (
    select
        s.run_id,
        s.step,
        s.epoch,
        s.backprops,
        s.state,
        count(*) over (partition by s.run_id) as n_steps
    from steps as s
    where s.run_id in (select run_id from declared)
),

valued as (
    select
        d.run_id,
        d.experiment_id,
        d.method,
        d.corruption,
        d.seed,
        d.d.key as diagnostic,
        d.d.label as label,
        d.d.meaning as meaning,
        d.d.threshold as threshold,
        n.step,
        n.epoch,
        n.backprops,
        n.n_steps,
        n.state[d.d.key] as value,
        n.state[d.switch_key] as switch_on
    from declared as d
    join numbered as n using (run_id)
    where n.state[d.d.key] is not null
),

final as (
    select
        * exclude (n_steps),
        min(value) over (partition by run_id, diagnostic) as run_min,
        max(value) over (partition by run_id, diagnostic) as run_max
    from valued
    qualify step % greatest(1, n_steps // $max_points) = 0
)

select * from final
order by run_id, diagnostic, step
