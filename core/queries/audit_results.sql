-- Every `lossaudit audit` in the database: its verdict and the numbers behind it, with the proxy run's dataset.
-- params: none
with final as (
    select
        a.*,
        r.dataset,
        r.model,
        r.epochs,
        r.classes
    from audits as a
    join runs as r using (run_id)
)

select * from final
order by run_id
