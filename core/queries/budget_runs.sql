-- One row per run trained to a budget (--budget): what it could spend, what it spent and its test error at the end.
-- params: none
-- protocol: the experiment without its budget (the runs of one budget curve); budget: the share of a full sgd run
-- (runs.epochs passes back-propagating every training example, a method's holdout included) it could spend, counted in budget_unit;
-- spent_backprops: its backprops plus those of its work before training (upfront); spent_cost: spent_backprops +
-- forward_cost × (its scoring forwards + those of its upfront work), in training steps; both also as shares of a full sgd run;
-- selected_test_error: the test error where the validation error (evals.val_error) was lowest, NULL without a
-- validation split — a model chosen by data the user has, never by the test split; loss_based, nominal_selectivity:
-- the method's traits; switch_on_share: the share of steps a method with a switch (vr) selected (NULL for others).
with st as (
    select
        run_id,
        max(backprops) as backprops,
        max(forwards_scoring) as forwards_scoring,
        max(seconds) as seconds,
        avg(state[r.config->'method_traits'->>'switch']) as switch_on_share
    from steps
    join runs as r using (run_id)
    group by run_id
),

ev as (
    select
        run_id,
        arg_max(test_error, backprops) as final_test_error,
        arg_max(val_error, backprops) as final_val_error,
        arg_min(test_error, val_error) as selected_test_error
    from evals
    group by run_id
),

picks as (
    select
        o.run_id,
        sum(o.picked * e.is_corrupted::integer)::double / nullif(sum(o.picked), 0) as corrupted_share,
        avg(e.is_corrupted::integer) as base_rate
    from observations as o
    join examples as e using (run_id, example_id)
    where e.role in ('train', 'canary')
    group by o.run_id
),

held as (
    -- a full sgd run covers every example a run could train on: rho's holdout too
    select run_id, count(*) as holdout
    from examples
    where role = 'holdout'
    group by run_id
),

budgeted as (
    select
        r.*,
        r.n_train + coalesce(held.holdout, 0) as n_full,
        (r.config->>'budget')::double as budget,
        r.config->>'budget_unit' as budget_unit,
        coalesce(r.config->>'schedule', 'step') as schedule,
        coalesce((r.config->>'forward_cost')::double, 0) as forward_cost,
        coalesce((r.config->'upfront'->>'backprops')::bigint, 0) as upfront_backprops,
        coalesce((r.config->'upfront'->>'forwards_scoring')::bigint, 0) as upfront_forwards,
        coalesce((r.config->'upfront'->>'seconds')::double, 0) as upfront_seconds
    from runs as r
    left join held using (run_id)
    where coalesce((r.config->>'budget')::double, 0) > 0
),

final as (
    select
        b.run_id,
        b.experiment_id,
        regexp_replace(b.experiment, ' · budget=[0-9.e+-]+', '') as protocol,
        b.arm as method,
        b.config->>'method_resolved' as family,
        coalesce((b.config->'method_traits'->>'is_baseline')::boolean, false) as is_baseline,
        coalesce((b.config->'method_traits'->>'is_control')::boolean, false) as is_control,
        coalesce((b.config->'method_traits'->>'loss_based')::boolean, false) as loss_based,
        (b.config->'method_traits'->>'nominal_selectivity')::double as nominal_selectivity,
        b.corruption,
        b.seed,
        b.status,
        b.budget,
        b.budget_unit,
        b.schedule,
        b.forward_cost,
        b.n_full::bigint * b.epochs as full_backprops,
        st.backprops + b.upfront_backprops as spent_backprops,
        st.backprops + b.upfront_backprops
            + b.forward_cost * (st.forwards_scoring + b.upfront_forwards) as spent_cost,
        (st.backprops + b.upfront_backprops)::double / (b.n_full::bigint * b.epochs) as spent_backprops_share,
        (st.backprops + b.upfront_backprops + b.forward_cost * (st.forwards_scoring + b.upfront_forwards))
            / (b.n_full::bigint * b.epochs) as spent_cost_share,
        st.forwards_scoring,
        ev.final_test_error,
        ev.final_val_error,
        ev.selected_test_error,
        st.seconds + b.upfront_seconds as seconds,
        picks.corrupted_share,
        picks.base_rate,
        st.switch_on_share
    from budgeted as b
    left join st using (run_id)
    left join ev using (run_id)
    left join picks using (run_id)
)

select * from final
order by protocol, method, corruption, budget, seed
