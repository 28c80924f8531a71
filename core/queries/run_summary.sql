-- One row per run: what it trained, how far it got, its test error, how selective it was and the corrupted share of its backprops.
-- params: none
-- realised_selectivity: picks / candidates in the rounds where the method selected (vs nominal_selectivity,
-- its definition); switch_on_share: for a method with a switch (method_traits.switch, a steps.state key), the
-- share of steps with it on, i.e. selecting (NULL for other methods); upfront_*: work done before the run's own
-- training (method_traits.upfront says what); family: the registry method the arm resolves to. The diagnostics a
-- method declares are summarised per run by the query `diagnostics`. selected_test_error: the test error where the
-- validation error was lowest (NULL without a validation split, --val-size): a model chosen without the test split.
with picks as (
    select
        o.run_id,
        sum(o.picked) as backprops_logged,
        sum(o.picked * e.is_corrupted::integer) as corrupted_backprops
    from observations as o
    join examples as e using (run_id, example_id)
    where e.role in ('train', 'canary')
    group by o.run_id
),

base as (
    select run_id, avg(is_corrupted::integer) as base_rate
    from examples
    where role in ('train', 'canary')
    group by run_id
),

ev as (
    select
        run_id,
        min(test_error) as best_test_error,
        arg_max(test_error, backprops) as final_test_error,
        arg_min(test_error, val_error) as selected_test_error
    from evals
    group by run_id
),

st as (
    select
        run_id,
        max(backprops) as backprops,
        max(forwards_scoring) as forwards_scoring,
        max(forwards_training) as forwards_training,
        max(selection_candidates) as selection_candidates,
        max(selection_picks) as selection_picks,
        avg(state[r.config->'method_traits'->>'switch']) as switch_on_share,
        max(seconds) as seconds
    from steps
    join runs as r using (run_id)
    group by run_id
),

final as (
    select
        r.run_id,
        r.experiment_id,
        r.experiment,
        r.arm as method,
        r.config->>'method_resolved' as family,
        r.dataset,
        r.model,
        r.corruption,
        r.corruption_kind,
        r.seed,
        r.status,
        r.epochs_done,
        r.epochs,
        r.n_train,
        st.backprops,
        st.forwards_scoring,
        st.forwards_training,
        coalesce((r.config->'upfront'->>'backprops')::bigint, 0) as upfront_backprops,
        ev.best_test_error,
        ev.final_test_error,
        ev.selected_test_error,
        (r.config->'method_traits'->>'nominal_selectivity')::double as nominal_selectivity,
        st.selection_picks::double / nullif(st.selection_candidates, 0) as realised_selectivity,
        coalesce(st.selection_candidates = 0, st.backprops >= r.n_train * r.epochs_done) as never_selected,
        st.switch_on_share,
        picks.corrupted_backprops::double / nullif(picks.backprops_logged, 0) as corrupted_share,
        base.base_rate,
        st.seconds,
        coalesce((r.config->'upfront'->>'seconds')::double, 0) as upfront_seconds,
        r.error
    from runs as r
    left join ev using (run_id)
    left join st using (run_id)
    left join picks using (run_id)
    left join base using (run_id)
)

select * from final
order by run_id
