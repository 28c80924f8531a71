-- Out-of-sample class probabilities of a cross-fitted run's held-out examples, averaged over the epochs it predicted.
-- params: run_id=null
with long as (
    select
        example_id,
        unnest(probs) as prob,
        generate_subscripts(probs, 1) - 1 as class
    from predictions
    where run_id = cast($run_id as integer)
),

final as (
    select
        example_id,
        class,
        avg(prob) as prob,
        count(*) as n_epochs
    from long
    group by example_id, class
)

select * from final
order by example_id, class
