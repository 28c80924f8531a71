-- Per-example noise scores of every run, higher = more suspect, from the observations of one forward mode.
-- params: mode=any|score|train, max_epoch=null, run_id=null
-- mode: any = every observation row (train-mode rows for sgd and warm-up epochs, scoring rows after);
--       score = only no-grad eval-mode scoring rows; train = only train-mode rows of training steps.
-- max_epoch: only observations of epochs up to this one (null = all), e.g. to score early training.
-- run_id: only this run (null = every run).
with obs as (
    select
        o.run_id,
        o.example_id,
        o.epoch,
        o.mode,
        o.loss,
        o.entropy,
        o.margin,
        o.p_true,
        o.picked,
        o.pred = e.label as correct
    from observations as o
    join examples as e using (run_id, example_id)
    where
        ($mode = 'any' or o.mode = $mode)
        and (cast($max_epoch as integer) is null or o.epoch <= cast($max_epoch as integer))
        and (cast($run_id as integer) is null or o.run_id = cast($run_id as integer))
),

ordered as (
    select
        *,
        lag(correct) over (partition by run_id, example_id order by epoch) as was_correct
    from obs
),

per_example as (
    select
        run_id,
        example_id,
        count(*) as n_observations,
        string_agg(distinct mode, '+' order by mode) as modes,
        -- @scores: one `expression as <x>_score,` line per registered score (core/scores.py, core/scores/*.sql)
        sum(picked) as picks
    from ordered
    group by run_id, example_id
),

final as (
    select
        p.*,
        e.label,
        e.true_label,
        e.is_corrupted,
        e.corruption_kind,
        e.label != e.true_label as label_changed,
        e.source,
        e.role
    from per_example as p
    join examples as e using (run_id, example_id)
)

select * from final
order by run_id, example_id
