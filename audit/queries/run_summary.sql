-- One row per run: what it trained, how far it got, its test error and the corrupted share of its backprops.
-- params: none
with picks as (
    select
        o.run_id,
        sum(o.picked) as backprops_logged,
        sum(o.picked * e.is_corrupted::integer) as corrupted_backprops
    from observations as o
    join examples as e using (run_id, example_id)
    group by o.run_id
),

base as (
    select run_id, avg(is_corrupted::integer) as base_rate
    from examples
    where role = 'train'
    group by run_id
),

ev as (
    select
        run_id,
        min(test_error) as best_test_error,
        arg_max(test_error, backprops) as final_test_error,
        max(backprops) as backprops,
        max(forwards_scoring) as forwards_scoring,
        max(forwards_training) as forwards_training,
        max(seconds) as seconds
    from evals
    group by run_id
),

final as (
    select
        r.run_id,
        r.method,
        r.dataset,
        r.model,
        r.corruption,
        r.seed,
        r.status,
        r.epochs_done,
        r.epochs,
        r.n_train,
        ev.backprops,
        ev.forwards_scoring,
        ev.forwards_training,
        ev.best_test_error,
        ev.final_test_error,
        picks.corrupted_backprops::double / nullif(picks.backprops_logged, 0) as corrupted_share,
        base.base_rate,
        ev.seconds
    from runs as r
    left join ev using (run_id)
    left join picks using (run_id)
    left join base using (run_id)
)

select * from final
order by run_id
