-- vr's variance-reduction switch over training: tau and whether importance sampling was on, per step.
-- params: max_points=400
-- Runs whose steps record tau; at most about max_points steps per run (evenly spaced), with the threshold.
with steps_tau as (
    select
        s.run_id,
        s.step,
        s.epoch,
        s.backprops,
        s.state['tau'] as tau,
        s.state['is_on'] as is_on,
        count(*) over (partition by s.run_id) as n_steps
    from steps as s
    where s.state['tau'] is not null
),

final as (
    select
        t.run_id,
        r.experiment_id,
        r.arm as method,
        r.corruption,
        r.seed,
        t.step,
        t.epoch,
        t.backprops,
        t.tau,
        t.is_on,
        (r.config->'method_params'->>'tau_th')::double as tau_th
    from steps_tau as t
    join runs as r using (run_id)
    where t.step % greatest(1, t.n_steps // $max_points) = 0
)

select * from final
order by run_id, step
