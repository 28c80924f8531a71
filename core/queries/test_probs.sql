-- Class probabilities a cross-fitted run gave its test split, averaged over the epochs it also predicted its held-out examples at (or every epoch, without those).
-- params: run_id=null
with held_out_epochs as (  -- the held-out predictions are read against the test split's: the same model states
    select distinct epoch
    from predictions
    where run_id = cast($run_id as integer)
),

long as (
    select
        t.example_id,
        t.label,
        unnest(t.probs) as prob,
        generate_subscripts(t.probs, 1) - 1 as class
    from test_predictions as t
    where t.run_id = cast($run_id as integer)
        and (t.epoch in (select epoch from held_out_epochs) or not exists (select 1 from held_out_epochs))
),

final as (
    select
        example_id,
        any_value(label) as label,
        class,
        avg(prob) as prob,
        count(*) as n_epochs
    from long
    group by example_id, class
)

select * from final
order by example_id, class
