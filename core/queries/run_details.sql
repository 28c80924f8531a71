-- Every run's recorded settings, as the report lists them and reproduces its images: one row per run.
-- params: none
with final as (
    select
        run_id,
        experiment_id,
        experiment,
        arm as method,
        method as method_given,
        coalesce(config->>'method_resolved', method) as method_resolved,
        dataset,
        model,
        corruption,
        corruption_kind,
        seed,
        status,
        epochs,
        epochs_done,
        n_train,
        n_test,
        classes,
        config,
        command,
        version,
        device,
        started_at,
        finished_at,
        error
    from runs
)

select * from final
order by run_id
